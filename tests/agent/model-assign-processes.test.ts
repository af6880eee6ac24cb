/**
 * Model assignment with real processes only: `xim router serve`, `xim run`
 * (engine=sim, so its engine is an `xim engine-sim` child), and the
 * commands an operator types: `xim router models add`, `xim router models
 * assign`, `xim router nodes`. The assignment is written by one process
 * and picked up by the running router from the shared state database.
 * Waits are generous: two shared cores can stall a process for a while.
 */
import assert from "node:assert/strict";
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, test } from "node:test";
import { loopbackServeArgs } from "../../scripts/lib/loopback-router.ts";
import type { NodeListing } from "../../src/router/nodes.ts";
import { baseEnv, waitFor, XimProcess, xim } from "../router/harness.ts";

const home = mkdtempSync(join(tmpdir(), "xim-assign-procs-"));
const stateDir = join(home, "router");
const cacheDir = join(home, "cache");
const env = baseEnv(home);
let router: XimProcess | undefined;
let node: XimProcess | undefined;

async function nodes(): Promise<NodeListing[]> {
  const r = await xim(["router", "nodes", "--state", stateDir, "--json"], env);
  assert.equal(r.code, 0, r.stderr);
  return (JSON.parse(r.stdout) as { nodes: NodeListing[] }).nodes;
}

before(async () => {
  const init = await xim(["router", "init", "--state", stateDir], env);
  assert.equal(init.code, 0, init.stderr);
  router = new XimProcess(loopbackServeArgs(stateDir), env);
  await router.line((l) => l.startsWith("{"), 30_000);
});

after(async () => {
  await node?.stop();
  await router?.stop();
  rmSync(home, { recursive: true, force: true });
});

describe("xim router models assign with real processes", { timeout: 120_000 }, () => {
  test("the running router delivers an assignment written by the CLI; the node pulls and serves it", async () => {
    const folder = join(home, "models", "tiny");
    mkdirSync(folder, { recursive: true });
    writeFileSync(join(folder, "config.json"), '{"architectures":["LlamaForCausalLM"]}');
    writeFileSync(join(folder, "model.safetensors"), Buffer.alloc(3 * 1024 * 1024 + 5, 7));
    const add = await xim(["router", "models", "add", "tiny", folder, "--state", stateDir], env);
    assert.equal(add.code, 0, add.stderr);

    const created = await xim(["router", "join-key", "create", "--state", stateDir, "--json"], env);
    assert.equal(created.code, 0, created.stderr);
    node = new XimProcess(["run"], {
      ...env,
      XEROTIER_AGENT_JOIN_KEY: JSON.parse(created.stdout).key,
      XEROTIER_AGENT_CONFIG_DIR: join(home, "node"),
      XEROTIER_AGENT_ENGINE: "sim",
      XEROTIER_AGENT_MODEL_CACHE_DIR: cacheDir,
      XEROTIER_AGENT_DISABLE_METRICS_SERVER: "1",
      XEROTIER_AGENT_LEASE_RENEWAL_INTERVAL_MS: "200",
      XEROTIER_AGENT_LEASE_DURATION_MS: "5000",
      XEROTIER_AGENT_VLLM_SALT_SECRET: "test-secret-for-assign-processes",
    });
    const first = await waitFor(
      async () => (await nodes()).find((n) => n.state === "ready" && n.models.includes("xim-sim")),
      { timeoutMs: 60_000, what: "the node to serve xim-sim", stopIf: () => node?.child.exitCode !== null },
    );

    const assigned = await xim(
      ["router", "models", "assign", first.nodeId, "tiny", "--state", stateDir],
      env,
    );
    assert.equal(assigned.code, 0, assigned.stderr);
    assert.match(assigned.stdout, /assigned router:\/\/tiny to node_/);

    const done = await waitFor(
      async () =>
        (await nodes()).find(
          (n) =>
            n.nodeId === first.nodeId &&
            (n.assignment?.progress?.state === "failed" ||
              (n.assignment?.progress?.state === "ready" &&
                n.state === "ready" &&
                n.models.includes("tiny"))),
        ),
      { timeoutMs: 60_000, what: "the node to serve the assigned model" },
    );
    assert.equal(done.assignment?.progress?.state, "ready", done.assignment?.progress?.message ?? "");
    assert.deepEqual(done.models, ["tiny"]);
    assert.deepEqual(
      readFileSync(join(cacheDir, "tiny", "model.safetensors")),
      readFileSync(join(folder, "model.safetensors")),
    );
    const table = await xim(["router", "nodes", "--state", stateDir], env);
    assert.match(table.stdout, /router:\/\/tiny ready/);
    assert.match(node.stdout + node.stderr, /the router assigned router:\/\/tiny/);
    assert.match(`${router?.stdout}${router?.stderr}`, /sending the node its model assignment/);
  });
});
