import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import { mkdtemp, rm, symlink, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, test } from "node:test";
import { readTextBounded, readTextBoundedSync, readTextHead } from "../../src/core/bounded-read.ts";
import { safeText } from "../../src/core/terminal-text.ts";

describe("readTextBounded", () => {
  let dir: string;
  before(async () => {
    dir = await mkdtemp(join(tmpdir(), "xim-bounded-"));
  });
  after(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  test("reads a regular file within the limit", async () => {
    await writeFile(join(dir, "ok.json"), '{"a":1}');
    assert.equal(await readTextBounded(join(dir, "ok.json"), { what: "config", maxBytes: 100 }), '{"a":1}');
  });

  test("refuses a file over the limit, naming it and the limit", async () => {
    await writeFile(join(dir, "big.json"), "x".repeat(101));
    await assert.rejects(
      readTextBounded(join(dir, "big.json"), { what: "the model's config.json", maxBytes: 100 }),
      (err: Error & { code?: string }) => {
        assert.equal(err.code, "XIM_FILE_TOO_LARGE");
        assert.match(err.message, /the model's config\.json .*big\.json is 101 bytes; at most 100 bytes/);
        return true;
      },
    );
  });

  test("refuses a symlink to /dev/zero without reading it", async () => {
    await symlink("/dev/zero", join(dir, "zero.json"));
    await assert.rejects(
      readTextBounded(join(dir, "zero.json"), { what: "config", maxBytes: 100 }),
      /is a character device; only a regular file is read/,
    );
  });

  test("refuses a FIFO without blocking", async () => {
    execFileSync("mkfifo", [join(dir, "fifo.json")]);
    await assert.rejects(
      readTextBounded(join(dir, "fifo.json"), { what: "config", maxBytes: 100 }),
      /is a FIFO/,
    );
  });

  test("a /proc file, which stat reports as 0 bytes, is read whole (sync and async alike)", async () => {
    const status = await readTextBounded("/proc/self/status", { what: "the kernel file", maxBytes: 1 << 20 });
    assert.match(status, /^Name:/m);
    assert.match(status, /^CapEff:/m, "past the first line: the buffer grew");
    const sync = readTextBoundedSync("/proc/self/status", { what: "the kernel file", maxBytes: 1 << 20 });
    assert.match(sync, /^CapEff:/m);
    assert.throws(
      () => readTextBoundedSync("/proc/self/status", { what: "the kernel file", maxBytes: 16 }),
      (err: Error & { code?: string }) => err.code === "XIM_FILE_TOO_LARGE",
    );
  });

  test("the sync reader refuses /dev/zero and FIFOs as the async one does", async () => {
    await symlink("/dev/zero", join(dir, "zero-sync"));
    assert.throws(
      () => readTextBoundedSync(join(dir, "zero-sync"), { what: "the .env file", maxBytes: 100 }),
      /the \.env file .*zero-sync is a character device/,
    );
    execFileSync("mkfifo", [join(dir, "fifo-sync")]);
    assert.throws(
      () => readTextBoundedSync(join(dir, "fifo-sync"), { what: "the .env file", maxBytes: 100 }),
      /is a FIFO/,
    );
  });

  test("readTextHead reads the first bytes of a large file and refuses a device", async () => {
    await writeFile(join(dir, "launcher"), `#!/usr/bin/python3\n${"x".repeat(100_000)}`);
    assert.equal(await readTextHead(join(dir, "launcher"), 18, "the vLLM launcher"), "#!/usr/bin/python3");
    await assert.rejects(readTextHead("/dev/zero", 10, "the vLLM launcher"), /character device/);
  });

  test("a missing file keeps ENOENT", async () => {
    await assert.rejects(readTextBounded(join(dir, "missing"), { what: "config", maxBytes: 100 }), {
      code: "ENOENT",
    });
  });
});

describe("safeText", () => {
  test("replaces terminal escapes, C1 controls and bidi overrides", () => {
    assert.equal(safeText("host\u001b]0;pwned\u0007\u001b[2J"), "host\ufffd]0;pwned\ufffd\ufffd[2J");
    assert.equal(safeText("a\u009bb\u202ec"), "a\ufffdb\ufffdc");
    assert.equal(safeText("line1\nline2"), "line1\ufffdline2");
    assert.equal(safeText("line1\nline2\tx", { keepLines: true }), "line1\nline2\tx");
  });
  test("bounds the length", () => {
    assert.equal(safeText("x".repeat(20), { maxLength: 5 }), "xxxxx…");
  });
});
