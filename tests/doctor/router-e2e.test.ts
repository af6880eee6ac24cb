/**
 * The reachability acceptance with real processes: `xim router
 * serve` running, a node enrolled with `xim enroll`, then `xim doctor`
 * reaching it over TCP + CURVE + ping; after the router stops, the same
 * address refuses and doctor fails with exit code 1.
 */
import assert from "node:assert/strict";
import { join } from "node:path";
import { after, before, describe, test } from "node:test";
import { loopbackServeArgs } from "../../scripts/lib/loopback-router.ts";
import { baseEnv, XimProcess, xim } from "../router/harness.ts";
import { cleanup, tempDir } from "./helpers.ts";

const home = tempDir("xim-doctor-e2e-");
const stateDir = join(home, "router");
const nodeDir = join(home, "node-config");
const env = baseEnv(home);
let router: XimProcess | undefined;

before(async () => {
  const init = await xim(["router", "init", "--state", stateDir, "--json"], env);
  assert.equal(init.code, 0, init.stderr);
  router = new XimProcess(loopbackServeArgs(stateDir), env);
  await router.line((l) => l.startsWith("{"), 30_000);
  const created = await xim(
    ["router", "join-key", "create", "--state", stateDir, "--uses", "1", "--json"],
    env,
  );
  assert.equal(created.code, 0, created.stderr);
  const enrolled = await xim(["enroll", "--json"], {
    ...env,
    XEROTIER_AGENT_JOIN_KEY: JSON.parse(created.stdout).key,
    XEROTIER_AGENT_CONFIG_DIR: nodeDir,
  });
  assert.equal(enrolled.code, 0, enrolled.stderr);
});

after(async () => {
  await router?.stop();
  cleanup();
});

function checks(stdout: string): Record<string, { status: string; evidence: string; fix: string | null }> {
  return Object.fromEntries(JSON.parse(stdout).checks.map((c: { id: string }) => [c.id, c]));
}

describe("xim doctor against a running xim router", { timeout: 120_000 }, () => {
  test("the enrolled node reaches the router: TCP, CURVE handshake, ping", async () => {
    const r = await xim(["doctor", "--json", "--check", "enrollment"], {
      ...env,
      XEROTIER_AGENT_CONFIG_DIR: nodeDir,
    });
    assert.equal(r.code, 0, r.stderr);
    const c = checks(r.stdout);
    assert.equal(c["enrollment-state"].status, "ok");
    assert.equal(c["router-reachable"].status, "ok", c["router-reachable"].evidence);
    assert.match(c["router-reachable"].evidence, /CURVE handshake and ping round trip [\d.]+ ms/);
  });

  test("with the router stopped, its address refuses and doctor exits 1", async () => {
    await router?.stop();
    const r = await xim(["doctor", "--json", "--check", "router-reachable"], {
      ...env,
      XEROTIER_AGENT_CONFIG_DIR: nodeDir,
    });
    assert.equal(r.code, 1);
    const c = checks(r.stdout);
    assert.equal(c["router-reachable"].status, "fail");
    assert.match(c["router-reachable"].evidence, /connection refused/);
  });
});
