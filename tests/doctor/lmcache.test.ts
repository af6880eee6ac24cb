import assert from "node:assert/strict";
import { type ChildProcess, spawn } from "node:child_process";
import { chmodSync, mkdirSync } from "node:fs";
import { createServer } from "node:net";
import { join } from "node:path";
import { after, before, describe, test } from "node:test";
import { tcpConnect } from "../../src/transport/tcp-connect.ts";
import { commandPath, lackingCommand, skipOption } from "../helpers/prerequisite.ts";
import { cleanup, doctor, tempDir } from "./helpers.ts";

const REDIS = commandPath("redis-server");
const NO_REDIS = skipOption(
  lackingCommand("redis-server", ".ci/run installs the Debian package redis-server"),
);

async function freePort(): Promise<number> {
  const server = createServer();
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const port = (server.address() as { port: number }).port;
  await new Promise<void>((resolve) => server.close(() => resolve()));
  return port;
}

async function startRedis(args: string[] = []): Promise<{ port: number; child: ChildProcess }> {
  const port = await freePort();
  const child = spawn(
    REDIS as string,
    ["--port", String(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no", ...args],
    {
      stdio: "ignore",
    },
  );
  // Ready when it accepts connections; generous bound (a loaded CI machine), never a timing assertion.
  const deadline = Date.now() + 20_000;
  while (Date.now() < deadline) {
    if ((await tcpConnect("127.0.0.1", port, 500)).ok) return { port, child };
    await new Promise((r) => setTimeout(r, 50));
  }
  child.kill("SIGKILL");
  throw new Error(`redis-server did not listen on ${port}`);
}

const children: ChildProcess[] = [];
after(() => {
  for (const c of children) c.kill("SIGKILL");
  cleanup();
});

const LM = { XEROTIER_AGENT_LMCACHE_ENABLED: "true" };

describe("LMCache: Redis/Valkey PING with a real redis-server", { skip: NO_REDIS }, () => {
  let port = 0;
  let child: ChildProcess;
  before(async () => {
    ({ port, child } = await startRedis());
    children.push(child);
  });

  test("a running Redis answers PONG", { timeout: 30_000 }, async () => {
    const r = await doctor(
      { ...LM, XEROTIER_AGENT_LMCACHE_REDIS_URL: `redis://127.0.0.1:${port}` },
      { selectors: ["lmcache"] },
    );
    assert.equal(r["lmcache-redis"].status, "ok");
    assert.match(r["lmcache-redis"].evidence, /answered PONG/);
    assert.equal(r["lmcache-enabled"].status, "ok");
    assert.match(r["lmcache-enabled"].evidence, /Redis\/Valkey shared tier/);
  });

  test("a stopped Redis fails with the fix, and doctor does not hang", { timeout: 30_000 }, async () => {
    const { port: p2, child: c2 } = await startRedis();
    children.push(c2);
    c2.kill("SIGKILL");
    await new Promise((r) => c2.once("exit", r));
    const r = await doctor(
      { ...LM, XEROTIER_AGENT_LMCACHE_REDIS_URL: `redis://127.0.0.1:${p2}` },
      { selectors: ["lmcache-redis"] },
    );
    assert.equal(r["lmcache-redis"].status, "fail");
    assert.match(r["lmcache-redis"].evidence, new RegExp(`redis://127\\.0\\.0\\.1:${p2}`));
    assert.match(r["lmcache-redis"].fix ?? "", /XEROTIER_AGENT_LMCACHE_REDIS_URL/);
  });

  test("a Redis with a password refuses a URL without it; the password never shows", {
    timeout: 30_000,
  }, async () => {
    const { port: p3, child: c3 } = await startRedis(["--requirepass", "s3cret-pw"]);
    children.push(c3);
    const bad = await doctor(
      { ...LM, XEROTIER_AGENT_LMCACHE_REDIS_URL: `redis://127.0.0.1:${p3}` },
      { selectors: ["lmcache-redis"] },
    );
    assert.equal(bad["lmcache-redis"].status, "fail");
    assert.match(bad["lmcache-redis"].fix ?? "", /redis:\/\/:<password>@host:6379/);
    const good = await doctor(
      { ...LM, XEROTIER_AGENT_LMCACHE_REDIS_URL: `redis://:s3cret-pw@127.0.0.1:${p3}` },
      { selectors: ["lmcache-redis"] },
    );
    assert.equal(good["lmcache-redis"].status, "ok");
    assert.doesNotMatch(good["lmcache-redis"].evidence, /s3cret-pw/);
    assert.match(good["lmcache-redis"].evidence, /:\*\*\*@127\.0\.0\.1/);
  });
});

describe("LMCache without Redis", () => {
  test("LMCache off: the Redis and config checks are skipped", async () => {
    const r = await doctor({}, { selectors: ["lmcache"] });
    assert.match(r["lmcache-enabled"].evidence, /^off/);
    assert.equal(r["lmcache-redis"].status, "skipped");
    assert.equal(r["lmcache-config-writable"].status, "skipped");
  });

  test("LMCache on without a URL uses local tiers only", async () => {
    const r = await doctor(LM, { selectors: ["lmcache-redis"] });
    assert.equal(r["lmcache-redis"].status, "skipped");
    assert.match(r["lmcache-redis"].evidence, /local tiers only/);
  });

  test("the LMCache config file location must be writable by the agent's user", async () => {
    const dir = join(tempDir(), "config");
    mkdirSync(dir);
    chmodSync(dir, 0o755);
    const file = join(dir, "lmcache_config.yaml");
    const ok = await doctor({ ...LM, LMCACHE_CONFIG_FILE: file }, { selectors: ["lmcache-config-writable"] });
    assert.equal(ok["lmcache-config-writable"].status, "ok");
    const bad = await doctor(
      { ...LM, LMCACHE_CONFIG_FILE: file },
      { selectors: ["lmcache-config-writable"], uid: 4242, gid: 4242, gids: [4242] },
    );
    assert.equal(bad["lmcache-config-writable"].status, "fail");
    assert.match(
      bad["lmcache-config-writable"].evidence,
      new RegExp(`${file}: ${dir} is not writable by uid 4242`),
    );
    assert.match(bad["lmcache-config-writable"].fix ?? "", /sudo chown -R 4242:4242/);
  });
});
