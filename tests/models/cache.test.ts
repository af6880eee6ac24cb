import assert from "node:assert/strict";
import { existsSync, mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, test } from "node:test";
import { ModelCache, modelKey } from "../../src/models/cache.ts";
import { type PullConfig, pullModel } from "../../src/models/pull.ts";
import type { PullError } from "../../src/models/source.ts";
import { HttpManifestSource } from "../../src/models/sources/http-manifest.ts";
import { bytesOf, FileServer, sha256 } from "./helpers/file-server.ts";

const root = mkdtempSync(join(tmpdir(), "xim-cache-"));
after(() => rmSync(root, { recursive: true, force: true }));
const server = new FileServer();
before(() => server.start());
after(() => server.stop());

/** A cache limit of 1000 bytes: 1e-6 GB. */
const LIMIT_GB = 1000 / 1_000_000_000;

function publish(name: string, size: number): HttpManifestSource {
  const data = bytesOf(size, name.length);
  server.files.set(`/${name}/w.bin`, data);
  server.json.set(`/${name}/manifest.json`, { name, files: [{ path: "w.bin", size, sha256: sha256(data) }] });
  return new HttpManifestSource(`${server.base}/${name}/manifest.json`);
}

let n = 0;
function config(): PullConfig {
  n += 1;
  return {
    modelCacheDir: join(root, `c${n}`),
    modelCacheMaxSizeGb: LIMIT_GB,
    modelPullMaxAttempts: 0,
    modelPullBaseDelayMs: 1,
    modelPullMaxDelayMs: 1,
  };
}

/** A clock the test moves, so "least recently used" is exact. */
function clock() {
  let t = Date.parse("2026-01-01T00:00:00Z");
  return { now: () => t, advance: (ms = 60_000) => (t += ms) };
}

describe("the cache size limit", () => {
  test("least recently used models are evicted first to make room", async () => {
    const cfg = config();
    const c = clock();
    await pullModel({ source: publish("m-a", 400), config: cfg, now: c.now });
    c.advance();
    await pullModel({ source: publish("m-b", 400), config: cfg, now: c.now });
    c.advance();
    // Using m-a makes m-b the least recently used.
    await new ModelCache(cfg, c.now).touch("m-a");
    c.advance();
    const r = await pullModel({ source: publish("m-c", 400), config: cfg, now: c.now });
    assert.deepEqual(r.evicted, ["m-b"]);
    const names = (await new ModelCache(cfg).list()).map((m) => m.name);
    assert.deepEqual(names, ["m-a", "m-c"]);
    c.advance();
    const r2 = await pullModel({ source: publish("m-d", 700), config: cfg, now: c.now });
    assert.deepEqual(r2.evicted, ["m-a", "m-c"], "oldest first until the new model fits");
  });

  test("a model in use is never evicted; a pull that cannot fit fails before downloading, with the numbers", async () => {
    const cfg = config();
    await pullModel({ source: publish("u-a", 400), config: cfg });
    await pullModel({ source: publish("u-b", 400), config: cfg });
    const cache = new ModelCache(cfg);
    const leaseA = await cache.markInUse("u-a");
    const leaseB = await cache.markInUse("u-b");
    const before = server.stats("/u-c/w.bin").requests;
    await assert.rejects(pullModel({ source: publish("u-c", 400), config: cfg }), (err: PullError) => {
      assert.equal(err.code, "XIM_CACHE_FULL");
      assert.match(
        err.message,
        /u-c needs 400 B; the cache holds 800 B of its 1\.0 KB limit and only 0 B can be evicted/,
      );
      assert.match(err.message, /u-a in use, 400 B; u-b in use, 400 B/);
      return true;
    });
    assert.equal(server.stats("/u-c/w.bin").requests, before, "no byte was requested");
    await leaseB.release();
    const r = await pullModel({ source: publish("u-c", 400), config: cfg });
    assert.deepEqual(r.evicted, ["u-b"]);
    assert.ok(existsSync(join(cfg.modelCacheDir, "u-a")), "the model in use stays");
    await leaseA.release();
  });

  test("a model larger than the whole limit fails at once, saying what to raise", async () => {
    await assert.rejects(pullModel({ source: publish("huge", 1500), config: config() }), (err: PullError) => {
      assert.equal(err.code, "XIM_CACHE_FULL");
      assert.match(err.message, /huge needs 1\.5 KB, more than the whole cache limit of 1\.0 KB/);
      assert.match(err.hint ?? "", /XEROTIER_AGENT_MODEL_CACHE_MAX_SIZE_GB/);
      return true;
    });
  });

  test("an in-use marker of a process that is gone does not pin the model", async () => {
    const cfg = config();
    await pullModel({ source: publish("s-a", 400), config: cfg });
    const cache = new ModelCache(cfg);
    const { writeFileSync } = await import("node:fs");
    const { hostname } = await import("node:os");
    const { mkdirSync } = await import("node:fs");
    mkdirSync(cache.inUseDir("s-a"), { recursive: true });
    writeFileSync(
      join(cache.inUseDir("s-a"), "999999-dead"),
      JSON.stringify({ pid: 999_999, host: hostname() }),
    );
    assert.equal(await cache.inUse("s-a"), false);
  });

  test("--list data: names, sizes, last use and folders xim did not place", async () => {
    const cfg = config();
    const c = clock();
    await pullModel({ source: publish("l-a", 100), config: cfg, now: c.now });
    const { mkdirSync, writeFileSync } = await import("node:fs");
    mkdirSync(join(cfg.modelCacheDir, "hand-copied"));
    writeFileSync(join(cfg.modelCacheDir, "hand-copied", "config.json"), "{}");
    const list = await new ModelCache(cfg).list();
    assert.deepEqual(
      list.map((m) => [m.name, m.sizeBytes, m.managed]),
      [
        ["hand-copied", 2, false],
        ["l-a", 100, true],
      ],
    );
    assert.equal(list[1].lastUsedAt, "2026-01-01T00:00:00.000Z");
  });
});

test("model names map to folder names without escaping the cache", () => {
  assert.equal(modelKey("mistralai/Mixtral-8x7B-v0.1"), "mistralai--Mixtral-8x7B-v0.1");
  assert.equal(modelKey("a b"), "a_b");
  assert.throws(() => modelKey(".."), /cannot name a model folder/);
  assert.throws(() => modelKey("../x"), /cannot name a model folder/);
  assert.equal(modelKey("org/../../x"), "org--..--..--x", "no path separator survives");
});

test("a folder xim did not place is never overwritten by a pull of the same name, unless forced", async () => {
  const cfg = config();
  const { mkdirSync, writeFileSync, readFileSync } = await import("node:fs");
  mkdirSync(join(cfg.modelCacheDir, "mine"), { recursive: true });
  writeFileSync(join(cfg.modelCacheDir, "mine", "config.json"), "hand made");
  await assert.rejects(pullModel({ source: publish("mine", 100), config: cfg }), (err: PullError) => {
    assert.equal(err.code, "XIM_PULL_EXISTS");
    return true;
  });
  assert.equal(readFileSync(join(cfg.modelCacheDir, "mine", "config.json"), "utf8"), "hand made");
  await pullModel({ source: publish("mine", 100), config: cfg, force: true });
  assert.ok(!existsSync(join(cfg.modelCacheDir, "mine", "config.json")));
});
