/**
 * Rows of the Xerotier documentation's troubleshooting table that doctor
 * missed: a malformed join key, a model path that does not exist or cannot be
 * loaded, and LMCache's disk tier against its limit.
 */
import assert from "node:assert/strict";
import { mkdirSync, truncateSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { after, describe, test } from "node:test";
import { silentLogger } from "../../src/core/log.ts";
import { encodeJoinKey } from "../../src/protocol/join-key.ts";
import { createJoinKey } from "../../src/router/join-keys.ts";
import { startRouterService } from "../../src/router/service.ts";
import { cleanup, doctor, tempDir } from "./helpers.ts";

after(cleanup);

const goodKey = encodeJoinKey({
  project: "acme",
  secret: new Uint8Array(16).fill(7),
  tlsPin: "ab".repeat(32),
  curvePin: "cd".repeat(32),
  url: "https://router.example:8443",
});

describe("join-key", () => {
  test("garbage in XEROTIER_AGENT_JOIN_KEY fails and says what a key looks like", async () => {
    const r = await doctor({ XEROTIER_AGENT_JOIN_KEY: "garbage" }, { selectors: ["join-key"] });
    assert.equal(r["join-key"].status, "fail");
    assert.match(r["join-key"].evidence, /not a join key: the key must start with 'xjk_'/);
    assert.match(r["join-key"].fix ?? "", /xim router join-key create/);
  });

  test("a truncated key fails on its checksum or length, and the key itself is never printed", async () => {
    const truncated = goodKey.slice(0, -6);
    const r = await doctor({ XEROTIER_AGENT_JOIN_KEY: truncated }, { selectors: ["join-key"] });
    assert.equal(r["join-key"].status, "fail");
    assert.match(r["join-key"].evidence, /truncated/);
    assert.ok(!JSON.stringify(r).includes(truncated.slice(10)));
  });

  test("a whole key whose router cannot be asked warns, naming the project and the router", async () => {
    const r = await doctor({ XEROTIER_AGENT_JOIN_KEY: goodKey }, { selectors: ["join-key"] });
    assert.equal(r["join-key"].status, "warn");
    assert.match(
      r["join-key"].evidence,
      /project acme, enrolling at https:\/\/router\.example:8443; the router could not be asked/,
    );
  });

  test("the router is asked whether the key still enrolls: expired fails, active is ok, nothing is spent", async () => {
    const router = await startRouterService({
      stateDir: tempDir("xim-router-"),
      enrollListen: { host: "127.0.0.1", port: 0 },
      controlBind: "tcp://127.0.0.1:0",
      streamingBind: "tcp://127.0.0.1:0",
      logger: silentLogger(),
    });
    try {
      const active = createJoinKey(router.store, router.identity, {
        project: "acme",
        uses: 3,
        ttlMs: null,
        labels: {},
      });
      const ok = await doctor({ XEROTIER_AGENT_JOIN_KEY: active.key }, { selectors: ["join-key"] });
      assert.equal(ok["join-key"].status, "ok", ok["join-key"].evidence);
      assert.match(ok["join-key"].evidence, /the router accepts it \(3 uses left, never expires\)/);
      assert.equal(
        router.store.listJoinKeys().find((k) => k.id === active.row.id)?.uses,
        0,
        "the check spent nothing",
      );

      const expired = createJoinKey(router.store, router.identity, {
        project: "acme",
        uses: 1,
        ttlMs: 60_000,
        labels: {},
      });
      router.store.db
        .prepare("UPDATE join_keys SET expires_at = ? WHERE id = ?")
        .run(Date.now() - 1000, expired.row.id);
      const r = await doctor({ XEROTIER_AGENT_JOIN_KEY: expired.key }, { selectors: ["join-key"] });
      assert.equal(r["join-key"].status, "fail");
      assert.match(r["join-key"].evidence, /the join key has expired/);
      assert.match(r["join-key"].fix ?? "", /xim router join-key create/);
    } finally {
      await router.close();
    }
  });
});

describe("model-path", () => {
  test("a path that does not exist fails, naming it", async () => {
    const r = await doctor(
      { XEROTIER_AGENT_INITIAL_MODEL_PATH: "/nonexistent/model" },
      { selectors: ["model-path"] },
    );
    assert.equal(r["model-path"].status, "fail");
    assert.match(r["model-path"].evidence, /\/nonexistent\/model does not exist/);
  });

  test("a folder without config.json fails with the planner's reason", async () => {
    const dir = tempDir();
    const r = await doctor({ XEROTIER_AGENT_INITIAL_MODEL_PATH: dir }, { selectors: ["model-path"] });
    assert.equal(r["model-path"].status, "fail");
    assert.match(r["model-path"].evidence, /no config\.json/);
  });

  test("config.json without weights fails for vLLM", async () => {
    const dir = tempDir();
    writeFileSync(
      join(dir, "config.json"),
      JSON.stringify({
        architectures: ["LlamaForCausalLM"],
        num_hidden_layers: 2,
        hidden_size: 64,
        num_attention_heads: 4,
      }),
    );
    const r = await doctor({ XEROTIER_AGENT_INITIAL_MODEL_PATH: dir }, { selectors: ["model-path"] });
    assert.equal(r["model-path"].status, "fail");
    assert.match(r["model-path"].evidence, /no weight files/);
    writeFileSync(join(dir, "model.safetensors"), Buffer.alloc(1024));
    const again = await doctor({ XEROTIER_AGENT_INITIAL_MODEL_PATH: dir }, { selectors: ["model-path"] });
    assert.equal(again["model-path"].status, "ok");
    assert.match(again["model-path"].evidence, /LlamaForCausalLM, 2 layers/);
  });

  test("no initial model is skipped, not failed", async () => {
    const r = await doctor({}, { selectors: ["model-path"] });
    assert.equal(r["model-path"].status, "skipped");
  });
});

describe("lmcache-disk", () => {
  test("a disk tier holding more than its limit warns", async () => {
    const dir = tempDir();
    mkdirSync(join(dir, "chunks"));
    // A sparse file: 2 GB as the folder's usage counts it, no real disk space.
    writeFileSync(join(dir, "chunks", "a.bin"), "");
    truncateSync(join(dir, "chunks", "a.bin"), 2e9);
    const env = {
      XEROTIER_AGENT_LMCACHE_ENABLED: "1",
      XEROTIER_AGENT_LMCACHE_DIR: dir,
      XEROTIER_AGENT_LMCACHE_DISK_SIZE_GB: "1",
    };
    const r = await doctor(env, { selectors: ["lmcache-disk"] });
    assert.equal(r["lmcache-disk"].status, "warn");
    assert.match(r["lmcache-disk"].evidence, /holds 2\.0 GB of its 1 GB limit.*over the limit/);
  });

  test("a limit larger than the free space warns with the largest that fits", async () => {
    const dir = tempDir();
    const env = {
      XEROTIER_AGENT_LMCACHE_ENABLED: "1",
      XEROTIER_AGENT_LMCACHE_DIR: dir,
      XEROTIER_AGENT_LMCACHE_DISK_SIZE_GB: "1000000",
    };
    const r = await doctor(env, { selectors: ["lmcache-disk"] });
    assert.equal(r["lmcache-disk"].status, "warn");
    assert.match(r["lmcache-disk"].fix ?? "", /XEROTIER_AGENT_LMCACHE_DISK_SIZE_GB to at most \d+/);
  });

  test("off, or with the disk tier turned off (0), it is skipped", async () => {
    assert.equal((await doctor({}, { selectors: ["lmcache-disk"] }))["lmcache-disk"].status, "skipped");
    const r = await doctor(
      { XEROTIER_AGENT_LMCACHE_ENABLED: "1", XEROTIER_AGENT_LMCACHE_DISK_SIZE_GB: "0" },
      { selectors: ["lmcache-disk"] },
    );
    assert.equal(r["lmcache-disk"].status, "skipped");
  });

  test("unset, the automatic size (half the free space, at most 100 GB) is what is checked", async () => {
    const r = await doctor(
      { XEROTIER_AGENT_LMCACHE_ENABLED: "1", XEROTIER_AGENT_LMCACHE_DIR: tempDir() },
      { selectors: ["lmcache-disk"] },
    );
    const c = r["lmcache-disk"];
    // The test machine's free space decides which of the two it is; both say the rule or the reason.
    if (c.status === "skipped")
      assert.match(c.evidence, /no disk tier: .* free for .*the automatic size needs 2 GB/);
    else {
      assert.equal(c.status, "ok");
      assert.match(c.evidence, /GB limit \(automatic: half the free space, at most 100 GB\)/);
    }
  });
});
