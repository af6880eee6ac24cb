import assert from "node:assert/strict";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, test } from "node:test";
import { XimError } from "../../src/core/errors.ts";
import { diskError } from "../../src/models/disk-errors.ts";

const cacheDir = mkdtempSync(join(tmpdir(), "xim-disk-errors-"));
after(() => rmSync(cacheDir, { recursive: true, force: true }));

/** An error shaped as node:fs raises it (what a write on a full or locked-down disk throws). */
function errno(code: string, syscall: string, path?: string): NodeJS.ErrnoException {
  const err: NodeJS.ErrnoException = new Error(`${code}: ${syscall}${path ? ` '${path}'` : ""}`);
  err.code = code;
  err.syscall = syscall;
  if (path) err.path = path;
  return err;
}

test("a quota that runs out names the folder, the free and needed space and the fix", async () => {
  const err = await diskError(errno("EDQUOT", "write"), { cacheDir, name: "org/m", bytesLeft: 2_500_000 });
  assert.ok(err instanceof XimError);
  assert.equal(err.code, "XIM_CACHE_DISK");
  assert.match(err.message, /cannot pull org\/m into .*: this user's disk quota is used up \(EDQUOT/);
  assert.ok(err.message.includes(cacheDir));
  assert.match(err.message, /B free, 2\.5 MB still to download/);
  assert.match(err.hint ?? "", /quota/);
});

test("a full disk without a path in the error names the cache folder", async () => {
  const err = await diskError(errno("ENOSPC", "write"), { cacheDir, bytesLeft: 10 });
  assert.equal(err?.code, "XIM_CACHE_DISK");
  assert.ok(err?.message.includes(`ENOSPC writing ${cacheDir}`), err?.message);
  assert.match(err?.hint ?? "", /XEROTIER_AGENT_MODEL_CACHE_DIR at a larger disk.*resumes/);
});

test("permission denied says which user needs write access where", async () => {
  for (const code of ["EACCES", "EPERM"]) {
    const at = join(cacheDir, "x");
    const err = await diskError(errno(code, "open", at), { cacheDir });
    assert.equal(err?.code, "XIM_CACHE_NOT_WRITABLE");
    assert.ok(err?.message.includes(`${code} writing ${at}`), err?.message);
    assert.match(err?.hint ?? "", /write access to .*, or point XEROTIER_AGENT_MODEL_CACHE_DIR/);
  }
});

test("other errors and errors that already explain themselves pass through unchanged", async () => {
  assert.equal(await diskError(errno("ECONNRESET", "read"), { cacheDir }), undefined);
  assert.equal(await diskError(new XimError("XIM_X", "already clear"), { cacheDir }), undefined);
  assert.equal(await diskError(errno("ENOENT", "open", join(cacheDir, "gone")), { cacheDir }), undefined);
  assert.equal(await diskError("not an error", { cacheDir }), undefined);
});

test("free space is measured on the nearest folder that exists", async () => {
  const err = await diskError(errno("ENOSPC", "write"), { cacheDir: join(cacheDir, "not", "yet") });
  assert.match(err?.message ?? "", /\d B free|\d\.?\d* [KMGT]B free/);
});
