/**
 * ensurePrivateDir: a folder for private state is made 0700; one owned by
 * another user is refused (never written into); with `strict` (the node's
 * config folder) a symlink or any group/other permission is refused too
 * rather than tightened. Runs as root in CI: "another user" is uid 65534.
 */
import assert from "node:assert/strict";
import { chmodSync, chownSync, mkdirSync, mkdtempSync, rmSync, statSync, symlinkSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, describe, test } from "node:test";
import { ensurePrivateDir } from "../../src/core/atomic-file.ts";
import { XimError } from "../../src/core/errors.ts";

const root = mkdtempSync(join(tmpdir(), "xim-private-dir-"));
after(() => rmSync(root, { recursive: true, force: true }));

const unsafe = (pattern: RegExp) => (err: unknown) =>
  err instanceof XimError && err.code === "XIM_STATE_UNSAFE" && pattern.test(`${err.message} ${err.hint}`);

describe("ensurePrivateDir", () => {
  test("creates a missing folder 0700", async () => {
    const dir = join(root, "new", "nested");
    await ensurePrivateDir(dir);
    assert.equal(statSync(dir).mode & 0o777, 0o700);
  });

  test("tightens a loose folder of ours, but refuses one owned by another user", async () => {
    const ours = join(root, "ours");
    mkdirSync(ours, { mode: 0o755 });
    chmodSync(ours, 0o755);
    await ensurePrivateDir(ours);
    assert.equal(statSync(ours).mode & 0o777, 0o700);
    const theirs = join(root, "theirs");
    mkdirSync(theirs, { mode: 0o700 });
    chownSync(theirs, 65534, 65534);
    await assert.rejects(ensurePrivateDir(theirs), unsafe(/owned by uid 65534.*chown -R/));
  });

  test("strict: a symlink, or a folder others may read or write, is refused with the fix", async () => {
    const real = join(root, "real");
    mkdirSync(real, { mode: 0o700 });
    const link = join(root, "link");
    symlinkSync(real, link);
    await assert.rejects(ensurePrivateDir(link, { strict: true }), unsafe(/symbolic link.*rm /));
    chmodSync(real, 0o750);
    await assert.rejects(ensurePrivateDir(real, { strict: true }), unsafe(/mode 0750.*chmod 700/));
    chmodSync(real, 0o700);
    await ensurePrivateDir(real, { strict: true });
  });
});
