/**
 * A GPU that vanishes mid-run (the NVML "Unknown Error" of a container that
 * lost its GPUs) is noticed by a running `xim run`, reported to the router
 * at once, shown on /readyz and /metrics, and cleared when the GPU answers
 * again. Real parts: the router service (in this process, so the test can
 * read what the node sends), `xim run` as a child process with the
 * simulated engine, and the fixture nvidia-smi, switched by rewriting the
 * file XIM_FIXTURE_GPU_FILE names. The engine, killed while the GPU is
 * lost, waits for the GPU instead of crash-looping.
 */
import assert from "node:assert/strict";
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, test } from "node:test";
import { findFreePort } from "../../src/engine/free-port.ts";
import type { NodeCondition } from "../../src/protocol/conditions.ts";
import { createJoinKey } from "../../src/router/join-keys.ts";
import { Stack } from "../helpers/stack.ts";
import { sandbox } from "../planner/fixtures.ts";
import { baseEnv, waitFor, XimProcess } from "../router/harness.ts";

const home = mkdtempSync(join(tmpdir(), "xim-gpu-lost-"));
const box = sandbox();
const gpuMode = join(home, "gpu-scenario");
let stack: Stack | undefined;
let node: XimProcess | undefined;
/** The conditions of every node_status the router received, in order. */
const statuses: NodeCondition[][] = [];

before(async () => {
  stack = await Stack.start();
  stack.service.controlPlane.onNodeMessage((_lease, m) => {
    if (m.type === "node_status") statuses.push(m.conditions);
  });
});

after(async () => {
  await node?.stop();
  await stack?.close();
  rmSync(home, { recursive: true, force: true });
  box.cleanup();
});

async function get(port: number, path: string): Promise<{ status: number; body: string }> {
  const r = await fetch(`http://127.0.0.1:${port}${path}`);
  return { status: r.status, body: await r.text() };
}

/** The pid of the node's engine (`xim engine-sim`; the checks' nvidia-smi may be children too). */
function engineChild(p: XimProcess): number {
  const pid = p.child.pid as number;
  const children = readFileSync(`/proc/${pid}/task/${pid}/children`, "utf8").trim().split(/\s+/);
  const engines = children.filter((c) => {
    try {
      return readFileSync(`/proc/${c}/cmdline`, "utf8").includes("engine-sim");
    } catch {
      return false; // exited meanwhile
    }
  });
  assert.equal(engines.length, 1, `one engine-sim among the node's children: ${children.join(" ")}`);
  return Number(engines[0]);
}

const gpuLost = (cs: readonly NodeCondition[]) => cs.find((c) => c.condition === "gpu_lost");

test("a GPU lost mid-run raises gpu_lost (router, /readyz, /metrics); an engine dying meanwhile waits for the GPU; all clears when it answers again", {
  timeout: 240_000,
}, async () => {
  const s = stack as Stack;
  const { key } = createJoinKey(s.service.store, s.service.identity, {
    project: "default",
    uses: 1,
    ttlMs: null,
    labels: {},
  });
  writeFileSync(gpuMode, "l40s-x1\n");
  const metricsPort = await findFreePort();
  const p = new XimProcess(
    ["run"],
    baseEnv(home, {
      PATH: `${box.binWith(["nvidia-smi", "lscpu"])}:/usr/bin:/bin`,
      XIM_FIXTURE_GPU_FILE: gpuMode,
      XEROTIER_AGENT_JOIN_KEY: key,
      XEROTIER_AGENT_CONFIG_DIR: join(home, "node"),
      XEROTIER_AGENT_MODEL_CACHE_DIR: join(home, "models"),
      XEROTIER_AGENT_ENGINE: "sim",
      XEROTIER_AGENT_METRICS_HOST: "127.0.0.1",
      // The setting refuses 0: a port the OS just handed out (and took back).
      XEROTIER_AGENT_METRICS_PORT: String(metricsPort),
      XEROTIER_AGENT_LEASE_RENEWAL_INTERVAL_MS: "500",
      XEROTIER_AGENT_LEASE_DURATION_MS: "10000",
      XEROTIER_AGENT_VLLM_SALT_SECRET: "test-secret-for-gpu-lost",
    }),
  );
  node = p;
  const exited = () => p.child.exitCode !== null;
  try {
    await scenario(p, metricsPort, exited);
  } catch (err) {
    // The node's log says why; the assertion alone would not.
    throw new Error(
      `${(err as Error).message}\n--- node log (tail) ---\n${(p.stdout + p.stderr).slice(-6000)}`,
    );
  }
});

async function scenario(p: XimProcess, port: number, exited: () => boolean): Promise<void> {
  // Two shared cores can stall a process start for tens of seconds: the waits are generous.
  await waitFor(() => /metrics server listening/.test(p.stdout + p.stderr), {
    timeoutMs: 60_000,
    what: "the metrics server",
    stopIf: exited,
  });
  await waitFor(async () => (await get(port, "/readyz")).status === 200, {
    timeoutMs: 90_000,
    intervalMs: 200,
    what: "the node to be ready",
    stopIf: exited,
  });

  writeFileSync(gpuMode, "nvml-unknown-error\n");
  // The check runs every 5 s with a 4 s tool limit, so the node sees it within about 10 s (the
  // acceptance bound is 15 s); 60 s leaves room for a stalled process on two shared cores.
  const sent = await waitFor(() => statuses.map(gpuLost).find(Boolean), {
    timeoutMs: 60_000,
    intervalMs: 100,
    what: "a node_status with gpu_lost",
    stopIf: exited,
  });
  assert.equal(sent.severity, "blocking");
  assert.match(sent.message, /NVML: Unknown Error/);
  assert.match(sent.fix, /restart the container/i);

  const ready = await get(port, "/readyz");
  assert.equal(ready.status, 503, ready.body);
  const body = JSON.parse(ready.body) as { reasons: string[]; conditions: NodeCondition[] };
  assert.ok(
    body.reasons.some((r) => r.startsWith("gpu_lost: ") && r.includes("fix: ")),
    ready.body,
  );
  assert.ok(gpuLost(body.conditions), ready.body);
  const metrics = await get(port, "/metrics");
  assert.match(metrics.body, /^xim_node_condition\{condition="gpu_lost",severity="blocking"\} 1$/m);

  // The engine dies while the GPU is lost (as vLLM does when NVML fails): it is not restarted
  // until the GPU answers again.
  const log = () => p.stdout + p.stderr;
  const starts = () => (log().match(/"msg":"starting the engine"/g) ?? []).length;
  const startsBefore = starts();
  process.kill(engineChild(p), "SIGKILL");
  await waitFor(() => log().includes("the engine exited and the GPU does not answer"), {
    timeoutMs: 60_000,
    what: "the supervisor to wait for the GPU",
    stopIf: exited,
  });
  assert.equal(starts(), startsBefore, "no restart while the GPU is lost");

  const seenBefore = statuses.length;
  writeFileSync(gpuMode, "l40s-x1\n");
  await waitFor(() => statuses.slice(seenBefore).some((cs) => !gpuLost(cs)), {
    timeoutMs: 60_000,
    intervalMs: 100,
    what: "a node_status without gpu_lost",
    stopIf: exited,
  });
  await waitFor(async () => (await get(port, "/readyz")).status === 200, {
    timeoutMs: 60_000,
    intervalMs: 200,
    what: "the node to be ready again",
    stopIf: exited,
  });
  assert.doesNotMatch((await get(port, "/metrics")).body, /xim_node_condition\{condition="gpu_lost"/);
  assert.match(log(), /the GPU answers again: restarting the engine/);
  assert.equal(starts(), startsBefore + 1, "one restart, once the GPU answered");
  assert.equal((log().match(/condition raised: gpu_lost/g) ?? []).length, 1, "the raise is logged once");
  assert.equal((log().match(/condition cleared: gpu_lost/g) ?? []).length, 1, "the clear is logged once");
}
