import assert from "node:assert/strict";
import { chmodSync, chownSync, mkdirSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { after, describe, test } from "node:test";
import { lackingRoot, skipOption } from "../helpers/prerequisite.ts";
import { cleanup, doctor, tempDir } from "./helpers.ts";

after(cleanup);

const ME = process.getuid?.() ?? 0;
const OTHER = 4242;

function configDir(dirMode: number, fileMode: number): string {
  const dir = join(tempDir(), "xerotier");
  mkdirSync(dir);
  writeFileSync(join(dir, "enrollment.json"), "{}");
  chmodSync(join(dir, "enrollment.json"), fileMode);
  chmodSync(dir, dirMode);
  return dir;
}

describe("config-dir: 0700, files 0600, owned by the agent's user", () => {
  test("a private folder is ok", async () => {
    const r = await doctor(
      { XEROTIER_AGENT_CONFIG_DIR: configDir(0o700, 0o600) },
      { selectors: ["config-dir"] },
    );
    assert.equal(r["config-dir"].status, "ok");
  });

  test("a 0755 folder with a 0644 file fails with the chmod fixes", async () => {
    const dir = configDir(0o755, 0o644);
    const r = await doctor({ XEROTIER_AGENT_CONFIG_DIR: dir }, { selectors: ["config-dir"] });
    assert.equal(r["config-dir"].status, "fail");
    assert.match(r["config-dir"].evidence, /mode 0755 \(want 0700\)/);
    assert.match(r["config-dir"].evidence, /enrollment\.json 0644/);
    assert.equal(r["config-dir"].fix, `chmod 700 ${dir} && chmod 600 ${dir}/*`);
  });

  test("a folder owned by another user than the agent's fails with the chown fix", async () => {
    const dir = configDir(0o700, 0o600);
    const r = await doctor(
      { XEROTIER_AGENT_CONFIG_DIR: dir },
      { selectors: ["config-dir"], uid: OTHER, gid: OTHER, gids: [OTHER] },
    );
    assert.equal(r["config-dir"].status, "fail");
    assert.match(r["config-dir"].evidence, new RegExp(`owned by uid ${ME}, the agent runs as uid ${OTHER}`));
    assert.match(r["config-dir"].fix ?? "", new RegExp(`^sudo chown -R ${OTHER}:${OTHER} `));
  });

  test("a folder that does not exist yet is fine when its parent is writable", async () => {
    const r = await doctor(
      { XEROTIER_AGENT_CONFIG_DIR: join(tempDir(), "a", "b") },
      { selectors: ["config-dir"] },
    );
    assert.equal(r["config-dir"].status, "ok");
    assert.match(r["config-dir"].evidence, /does not exist yet/);
  });
});

describe("model-cache-dir and lmcache-dir: writable by the agent's user", () => {
  test("a cache folder of another owner with mode 0755 is not writable for the agent's uid", async () => {
    const cache = join(tempDir(), "models");
    mkdirSync(cache);
    chmodSync(cache, 0o755);
    const r = await doctor(
      { XEROTIER_AGENT_MODEL_CACHE_DIR: cache },
      { selectors: ["model-cache-dir"], uid: OTHER, gid: OTHER, gids: [OTHER] },
    );
    assert.equal(r["model-cache-dir"].status, "fail");
    assert.match(r["model-cache-dir"].evidence, /not writable by uid 4242 \(owner uid \d+, mode 0755\)/);
    assert.equal(r["model-cache-dir"].fix, `sudo chown -R 4242:4242 ${cache} && sudo chmod u+rwx ${cache}`);
  });

  test("group write access counts for a member of the group", {
    skip: skipOption(lackingRoot("chown to another user")),
  }, async () => {
    const cache = join(tempDir(), "models");
    mkdirSync(cache);
    chownSync(cache, 0, 777);
    chmodSync(cache, 0o775);
    const r = await doctor(
      { XEROTIER_AGENT_MODEL_CACHE_DIR: cache },
      { selectors: ["model-cache-dir"], uid: OTHER, gid: OTHER, gids: [OTHER, 777] },
    );
    assert.equal(r["model-cache-dir"].status, "ok");
  });

  test("the LMCache folder is checked only with LMCache on", async () => {
    const dir = join(tempDir(), "lmcache");
    mkdirSync(dir);
    chmodSync(dir, 0o500);
    const off = await doctor({ XEROTIER_AGENT_LMCACHE_DIR: dir }, { selectors: ["lmcache-dir"], uid: OTHER });
    assert.equal(off["lmcache-dir"].status, "skipped");
    const on = await doctor(
      { XEROTIER_AGENT_LMCACHE_DIR: dir, XEROTIER_AGENT_LMCACHE_ENABLED: "true" },
      { selectors: ["lmcache-dir"], uid: OTHER, gid: OTHER, gids: [OTHER] },
    );
    assert.equal(on["lmcache-dir"].status, "fail");
  });
});

describe("data-dir-owner: /data/xerotier belongs to the container's uid 5152", () => {
  function dataDir(owner: number): string {
    const root = join(tempDir(), "xerotier");
    for (const d of ["", "models", "config", "lmcache"]) {
      mkdirSync(join(root, d), { recursive: true });
      chownSync(join(root, d), owner, owner);
      chmodSync(join(root, d), 0o755);
    }
    return root;
  }

  test("folders owned by root fail with the seed's chown fix", {
    skip: skipOption(lackingRoot("chown to root")),
  }, async () => {
    const root = dataDir(0);
    const r = await doctor({}, { selectors: ["data-dir-owner"], dataDir: root });
    assert.equal(r["data-dir-owner"].status, "fail");
    assert.match(r["data-dir-owner"].evidence, /models \(uid 0, mode 0755\)/);
    assert.match(r["data-dir-owner"].fix ?? "", new RegExp(`^sudo chown -R 5152:5152 ${root}`));
  });

  test("folders owned by 5152 are ok", {
    skip: skipOption(lackingRoot("chown to 5152")),
  }, async () => {
    const r = await doctor({}, { selectors: ["data-dir-owner"], dataDir: dataDir(5152) });
    assert.equal(r["data-dir-owner"].status, "ok");
  });

  test("no /data/xerotier is skipped", async () => {
    const r = await doctor({}, { selectors: ["data-dir-owner"], dataDir: join(tempDir(), "absent") });
    assert.equal(r["data-dir-owner"].status, "skipped");
  });
});
