/**
 * Attack (local, on the files a pull reads back): a cache record, an
 * in-use marker or a pull lock replaced by a FIFO (an open for reading
 * blocks forever) or by a huge file. The pull and `xim pull --list` read
 * them bounded and as regular files only: a bad one is skipped, never a
 * hang or a read of gigabytes.
 */
import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import { mkdirSync, mkdtempSync, rmSync, truncateSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, test } from "node:test";
import { FileLimits } from "../../src/core/bounded-read.ts";
import { ModelCache } from "../../src/models/cache.ts";

const root = mkdtempSync(join(tmpdir(), "xim-pull-cache-files-"));
after(() => rmSync(root, { recursive: true, force: true }));

function cacheWithModel(name: string) {
  const dir = join(root, name);
  const cache = new ModelCache({ modelCacheDir: dir, modelCacheMaxSizeGb: 1 });
  mkdirSync(join(dir, name), { recursive: true });
  writeFileSync(join(dir, name, "config.json"), "{}");
  return cache;
}

test("a cache record replaced by a FIFO is skipped, not waited on forever", { timeout: 20_000 }, async () => {
  const cache = cacheWithModel("fifo");
  await cache.init();
  execFileSync("mkfifo", [cache.recordPath("fifo")]);
  assert.equal(await cache.readRecord("fifo"), undefined);
  const listed = await cache.list();
  assert.deepEqual(
    listed.map((m) => [m.name, m.managed]),
    [["fifo", false]],
  );
});

test("a cache record larger than the limit is skipped without being read", { timeout: 20_000 }, async () => {
  const cache = cacheWithModel("huge");
  await cache.init();
  // A sparse file: its size is over the limit, yet it takes no disk.
  writeFileSync(cache.recordPath("huge"), "");
  truncateSync(cache.recordPath("huge"), FileLimits.manifest * 8);
  assert.equal(await cache.readRecord("huge"), undefined);
});

test("an in-use marker replaced by a FIFO does not hang the eviction check", {
  timeout: 20_000,
}, async () => {
  const cache = cacheWithModel("marker");
  await cache.init();
  mkdirSync(cache.inUseDir("marker"), { recursive: true });
  execFileSync("mkfifo", [join(cache.inUseDir("marker"), "123-abcd")]);
  // Unreadable markers count as live: a model is never evicted on a guess.
  assert.equal(await cache.inUse("marker"), true);
});
