/**
 * The initial model's engine starts after registration, never before, and
 * never when the node cannot enroll or reach its router (the Xerotier
 * documentation: "starts vLLM with this model immediately after
 * registration"). Real processes only: `xim router serve`, `xim run` with
 * vLLM as the engine, where vLLM is the fake launcher
 * (tests/fixtures/bin/vllm), which appends one line per start to
 * $FAKE_VLLM_RECORD: no line, no engine start. Waits are generous: two
 * shared cores can stall a process for a while.
 */
import assert from "node:assert/strict";
import { cpSync, existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { after, before, describe, test } from "node:test";
import { fileURLToPath } from "node:url";
import { loopbackServeArgs } from "../../scripts/lib/loopback-router.ts";
import { MODELS, sandbox } from "../planner/fixtures.ts";
import { baseEnv, waitFor, XimProcess, xim } from "../router/harness.ts";

const FAKE_VLLM = fileURLToPath(new URL("../fixtures/bin/vllm", import.meta.url));
const home = mkdtempSync(join(tmpdir(), "xim-start-order-"));
const box = sandbox();
const stateDir = join(home, "router");
const record = join(home, "vllm-starts.jsonl");
let router: XimProcess | undefined;
const nodes: XimProcess[] = [];

/** The fixture model with an (empty) weights file, which the start-up check wants. */
const model = join(home, "llama-3-8b-instruct");

function starts(): number {
  return existsSync(record) ? readFileSync(record, "utf8").split("\n").filter(Boolean).length : 0;
}

function nodeEnv(configDir: string, joinKey?: string) {
  return baseEnv(home, {
    // The fixture nvidia-smi (one L40S) for the plan; this Node for the fake vLLM's `#!/usr/bin/env node`.
    PATH: `${box.binWith(["nvidia-smi", "lscpu"])}:${dirname(process.execPath)}:/usr/bin:/bin`,
    XIM_FIXTURE_GPU: "l40s-x1",
    FAKE_VLLM_RECORD: record,
    XEROTIER_AGENT_JOIN_KEY: joinKey,
    XEROTIER_AGENT_CONFIG_DIR: configDir,
    XEROTIER_AGENT_ENGINE: "vllm",
    XEROTIER_AGENT_VLLM_PATH: FAKE_VLLM,
    XEROTIER_AGENT_INITIAL_MODEL_PATH: model,
    XEROTIER_AGENT_DISABLE_METRICS_SERVER: "1",
    XEROTIER_AGENT_LEASE_RENEWAL_INTERVAL_MS: "200",
    XEROTIER_AGENT_LEASE_DURATION_MS: "5000",
    XEROTIER_AGENT_VLLM_SALT_SECRET: "test-secret-for-start-order",
  });
}

async function joinKey(): Promise<{ key: string; id: string }> {
  const r = await xim(["router", "join-key", "create", "--state", stateDir, "--json"], baseEnv(home));
  assert.equal(r.code, 0, r.stderr);
  return JSON.parse(r.stdout);
}

/** The node's log (JSON lines on stderr; one stream, so in the order written). */
function logOf(p: XimProcess): string {
  return p.stdout + p.stderr;
}

function run(env: Record<string, string | undefined>): XimProcess {
  const p = new XimProcess(["run"], env);
  nodes.push(p);
  return p;
}

before(async () => {
  cpSync(join(MODELS, "llama-3-8b-instruct"), model, { recursive: true });
  writeFileSync(join(model, "model.safetensors"), "");
  const init = await xim(["router", "init", "--state", stateDir], baseEnv(home));
  assert.equal(init.code, 0, init.stderr);
  router = new XimProcess(loopbackServeArgs(stateDir), baseEnv(home));
  await router.line((l) => l.startsWith("{"), 30_000);
});

after(async () => {
  for (const n of nodes) await n.stop();
  await router?.stop();
  rmSync(home, { recursive: true, force: true });
  box.cleanup();
});

describe("the initial engine starts after registration", { timeout: 180_000 }, () => {
  test("a refused join key: the node exits and the engine never started", async () => {
    const { key, id } = await joinKey();
    const revoked = await xim(["router", "join-key", "revoke", id, "--state", stateDir], baseEnv(home));
    assert.equal(revoked.code, 0, revoked.stderr);
    const node = run(nodeEnv(join(home, "node-refused"), key));
    const done = await Promise.race([
      node.exited,
      new Promise<never>((_, reject) => setTimeout(() => reject(new Error("xim run did not exit")), 60_000)),
    ]);
    assert.notEqual(done.code, 0);
    assert.match(done.stdout + done.stderr, /revoked/);
    // The supervisor logs before it spawns; a child killed before it could record would still show here.
    assert.doesNotMatch(done.stdout + done.stderr, /"msg":"starting the engine"/);
    assert.equal(starts(), 0, "vLLM was never started");
  });

  test("a good router: the engine starts after register_ack; an unreachable router later: it never starts", async () => {
    const configDir = join(home, "node-good");
    const { key } = await joinKey();
    const node = run(nodeEnv(configDir, key));
    await waitFor(() => starts() === 1, {
      timeoutMs: 90_000,
      what: "the engine to start",
      stopIf: () => node.child.exitCode !== null,
    });
    // One process writes these lines in order: the registration is logged before the engine starts.
    const lines = logOf(node).split("\n");
    const registered = lines.findIndex((l) => l.includes("registered with the router"));
    const starting = lines.findIndex((l) => l.includes("registered: starting the engine"));
    const launched = lines.findIndex((l) => l.includes('"msg":"starting the engine"'));
    assert.ok(registered !== -1 && starting > registered && launched > starting, logOf(node));
    await node.stop(15_000);

    // The same enrolled node, its router gone: it keeps trying to register and never starts vLLM.
    await router?.stop();
    const before = starts();
    const offline = run(nodeEnv(configDir));
    await waitFor(() => (logOf(offline).match(/reconnecting to the router/g) ?? []).length >= 2, {
      timeoutMs: 90_000,
      what: "two failed registrations",
      stopIf: () => offline.child.exitCode !== null,
    });
    assert.equal(starts(), before, "vLLM was not started without a registration");
    assert.doesNotMatch(logOf(offline), /registered: starting the engine|"msg":"starting the engine"/);
  });
});
