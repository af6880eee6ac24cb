import assert from "node:assert/strict";
import {
  chmodSync,
  mkdirSync,
  mkdtempSync,
  readFileSync,
  rmSync,
  statSync,
  symlinkSync,
  writeFileSync,
} from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, describe, test } from "node:test";
import { chooseAddon } from "../../scripts/build.ts";
import { sha256Hex } from "../../src/core/sha256.ts";
import {
  assertTrustedPath,
  candidateFolders,
  extractAndLoad,
  extractInto,
  privateFolder,
} from "../../src/transport/addon-extract.ts";

const dir = mkdtempSync(join(tmpdir(), "xim-addon-"));
after(() => rmSync(dir, { recursive: true, force: true }));
const bytes = new Uint8Array(Buffer.from("not really a library, but bytes with a hash"));

describe("extracting the embedded addon", () => {
  test("it lands in a 0700 folder under a name carrying its sha256", () => {
    const file = extractInto(join(dir, "a", "addons"), bytes);
    assert.ok(file.endsWith(`zeromq-${sha256Hex(bytes).slice(0, 32)}.node`));
    assert.equal(statSync(join(dir, "a", "addons")).mode & 0o777, 0o700);
    assert.deepEqual(new Uint8Array(readFileSync(file)), bytes);
  });

  test("a file that was changed on disk is replaced before it is loaded", () => {
    const file = extractInto(join(dir, "b"), bytes);
    chmodSync(file, 0o600);
    writeFileSync(file, "planted");
    assert.equal(extractInto(join(dir, "b"), bytes), file);
    assert.deepEqual(new Uint8Array(readFileSync(file)), bytes);
  });

  test("a folder with a group/other-writable parent is refused, and the next folder is used", () => {
    const open = join(dir, "open");
    mkdirSync(open, { mode: 0o777 });
    chmodSync(open, 0o777);
    assert.throws(() => privateFolder(join(open, "addons")), /writable by other users/);
    const { file } = extractAndLoad(bytes, (f) => f, [join(open, "addons"), join(dir, "fallback")]);
    assert.ok(file.startsWith(join(dir, "fallback")));
  });

  test("a sticky shared parent such as /tmp is accepted", () => {
    assert.doesNotThrow(() => assertTrustedPath(dir));
  });

  test("a folder owned by another user is refused", () => {
    const uid = process.getuid?.();
    if (uid === undefined) return;
    assert.throws(() => privateFolder(join(dir, "c"), uid + 1), /owned by uid/);
  });

  test("a symlinked folder is used through its real path", () => {
    mkdirSync(join(dir, "real"), { mode: 0o700 });
    symlinkSync(join(dir, "real"), join(dir, "link"));
    const file = extractInto(join(dir, "link"), bytes);
    assert.ok(file.startsWith(join(dir, "real")));
  });

  test("when loading fails in one folder (a noexec mount), the next one is tried; all failing names each reason", () => {
    let calls = 0;
    const { file } = extractAndLoad(
      bytes,
      (f) => {
        calls++;
        if (f.startsWith(join(dir, "first"))) throw new Error("failed to map segment from shared object");
        return f;
      },
      [join(dir, "first"), join(dir, "second")],
    );
    assert.equal(calls, 2);
    assert.ok(file.startsWith(join(dir, "second")));
    assert.throws(
      () =>
        extractAndLoad(bytes, () => {
          throw new Error("noexec");
        }, [join(dir, "x")]),
      /x: noexec.*XDG_CACHE_HOME/,
    );
  });

  test("the cache folder comes first, then a per-user temp folder; no HOME still gives a folder", () => {
    const folders = candidateFolders({ XDG_CACHE_HOME: "/cache" });
    assert.equal(folders[0], "/cache/xim/addons");
    assert.match(folders.at(-1) ?? "", /xim-.+[/]addons$/);
  });

  test("the real zeromq addon, extracted this way, loads and reports libzmq", () => {
    const real = new Uint8Array(readFileSync(chooseAddon(process.arch as "x64" | "arm64").file));
    const { value } = extractAndLoad(
      real,
      (f) => {
        const mod = { exports: {} as { version?: string } };
        process.dlopen(mod, f);
        return mod.exports;
      },
      [join(dir, "real-addon")],
    );
    assert.equal(value.version, "4.3.5");
  });
});
