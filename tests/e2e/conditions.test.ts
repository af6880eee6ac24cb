/**
 * The node conditions' acceptance, both halves real: `xim run` child
 * processes with the simulated engine and the fixture nvidia-smi (switched
 * mid-run to the NVML "Unknown Error" by rewriting the file
 * XIM_FIXTURE_GPU_FILE names, and back), and a real router service (in this
 * process, so the test reads its leases and queue). A node whose GPU is lost
 * reports gpu_lost; the router sends its requests to a second node, or, with
 * one node, holds them in the queue until the GPU answers again, and past
 * the queue's wait answers 503 naming gpu_lost with Retry-After.
 *
 * Which node served a request: each node's engine stamps its own `created`
 * (engine-sim's --created) into every answer, and the router relays the
 * answer's bytes unchanged.
 *
 * Waits are on observable states (a lease's conditions, the queue's depth),
 * never fixed sleeps. Their bounds are generous because two shared CI cores
 * can stall a process start or a check's nvidia-smi for tens of seconds; the
 * node itself notices a lost GPU within about 10 s (gpu-driver runs every
 * 5 s with a 4 s tool limit).
 */
import assert from "node:assert/strict";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, describe, test } from "node:test";
import type { Lease } from "../../src/router/control-plane.ts";
import { createJoinKey } from "../../src/router/join-keys.ts";
import type { NodeListing } from "../../src/router/nodes.ts";
import type { QueueSettings } from "../../src/router/queue.ts";
import { post, Stack } from "../helpers/stack.ts";
import { sandbox } from "../planner/fixtures.ts";
import { baseEnv, waitFor, XimProcess, xim } from "../router/harness.ts";

const MODEL = "xim-sim";
/** Each scenario's own limit (npm test's default is 120 s): one or two `xim run` starts on two shared cores. */
const TEST_LIMIT = { timeout: 240_000 };
const home = mkdtempSync(join(tmpdir(), "xim-conditions-e2e-"));
const box = sandbox();
const running: XimProcess[] = [];
const stacks: Stack[] = [];

after(async () => {
  await Promise.allSettled(running.map((p) => p.stop()));
  await Promise.allSettled(stacks.map((s) => s.close()));
  rmSync(home, { recursive: true, force: true });
  box.cleanup();
});

async function startRouter(queue: QueueSettings): Promise<Stack> {
  const stack = await Stack.start({ queue });
  stacks.push(stack);
  return stack;
}

interface GpuNode {
  process: XimProcess;
  nodeId: string;
  /** The `created` its engine stamps into every answer. */
  created: number;
  /** Switch its fixture nvidia-smi: "l40s-x1" answers, "nvml-unknown-error" is a lost GPU. */
  gpu: (scenario: "l40s-x1" | "nvml-unknown-error") => void;
  log: () => string;
}

/** Start `xim run` for `project` on `stack` and wait until the router may dispatch to it. */
async function startNode(stack: Stack, project: string, name: string, created: number): Promise<GpuNode> {
  const { key } = createJoinKey(stack.service.store, stack.service.identity, {
    project,
    uses: 1,
    ttlMs: null,
    labels: {},
  });
  const gpuFile = join(home, `${name}-gpu`);
  const gpu = (scenario: string) => writeFileSync(gpuFile, `${scenario}\n`);
  gpu("l40s-x1");
  const before = new Set(stack.service.controlPlane.leases().map((l) => l.nodeId));
  const p = new XimProcess(
    ["run"],
    baseEnv(join(home, name), {
      PATH: `${box.binWith(["nvidia-smi", "lscpu"])}:/usr/bin:/bin`,
      XIM_FIXTURE_GPU_FILE: gpuFile,
      XEROTIER_AGENT_JOIN_KEY: key,
      XEROTIER_AGENT_CONFIG_DIR: join(home, name, "node"),
      XEROTIER_AGENT_MODEL_CACHE_DIR: join(home, name, "models"),
      XEROTIER_AGENT_ENGINE: "sim",
      XEROTIER_AGENT_VLLM_ARGS: `--created ${created} --load-time-ms 0`,
      XEROTIER_AGENT_DISABLE_METRICS_SERVER: "1",
      XEROTIER_AGENT_LEASE_RENEWAL_INTERVAL_MS: "500",
      XEROTIER_AGENT_LEASE_DURATION_MS: "10000",
      XEROTIER_AGENT_VLLM_SALT_SECRET: "test-secret-for-conditions-e2e",
    }),
  );
  running.push(p);
  const lease = await waitFor(
    () =>
      stack.service.controlPlane
        .leases()
        .find(
          (l) =>
            !before.has(l.nodeId) &&
            l.project === project &&
            l.state !== "expired" &&
            l.status.engine === "ready",
        ),
    {
      timeoutMs: 90_000,
      intervalMs: 100,
      what: `node ${name} ready at the router`,
      stopIf: () => p.child.exitCode !== null,
    },
  ).catch((err: Error) => {
    throw new Error(`${err.message}\n--- node ${name} log (tail) ---\n${(p.stdout + p.stderr).slice(-4000)}`);
  });
  return { process: p, nodeId: lease.nodeId, created, gpu, log: () => p.stdout + p.stderr };
}

const leaseOf = (stack: Stack, node: GpuNode): Lease | undefined =>
  stack.service.controlPlane.lease(node.nodeId);
const hasGpuLost = (l: Lease | undefined) => l?.conditions.some((c) => c.condition === "gpu_lost") ?? false;

/** The router has the node's gpu_lost (the node found it and sent it). */
async function routerSeesGpuLost(stack: Stack, node: GpuNode, lost: boolean): Promise<void> {
  await waitFor(() => hasGpuLost(leaseOf(stack, node)) === lost, {
    timeoutMs: 60_000,
    intervalMs: 100,
    what: `the router to see gpu_lost ${lost ? "raised" : "cleared"} on the node`,
    stopIf: () => node.process.child.exitCode !== null,
  });
}

function chat(stack: Stack, project: string) {
  const auth = { authorization: `Bearer ${stack.apiKey(project, "t")}` };
  return () =>
    post(
      stack.url,
      "/v1/chat/completions",
      { model: MODEL, messages: [{ role: "user", content: "hi" }] },
      auth,
    );
}

/** The `created` of an answer: which node's engine served it. */
function servedBy(r: { status: number; body: Buffer }): number {
  assert.equal(r.status, 200, r.body.toString());
  return (JSON.parse(r.body.toString()) as { created: number }).created;
}

/** Run the scenario, then stop its nodes; on failure, add their logs (the assertion alone would not say why). */
async function withLogs(nodes: () => GpuNode[], scenario: () => Promise<void>): Promise<void> {
  try {
    await scenario();
  } catch (err) {
    const logs = nodes().map((n) => `--- node ${n.nodeId} log (tail) ---\n${n.log().slice(-4000)}`);
    throw new Error(`${(err as Error).message}\n${logs.join("\n")}`);
  } finally {
    // Each scenario's nodes stop with it: two shared cores are enough for one scenario at a time.
    await Promise.allSettled(nodes().map((n) => n.process.stop()));
  }
}

// The queue waits long (never reached by accident on a loaded machine): a held request is released
// by the GPU answering again.
describe("a GPU lost mid-run, with the queue's limits far away", { timeout: 600_000 }, () => {
  test(
    "two nodes, one's GPU lost: the other serves every request; `xim router nodes` shows gpu_lost blocking",
    TEST_LIMIT,
    async () => {
      const stack = await startRouter({ queueMax: 8, queueTimeoutMs: 120_000 });
      const nodes: GpuNode[] = [];
      await withLogs(
        () => nodes,
        async () => {
          nodes.push(await startNode(stack, "pair", "pair-a", 1_000_001));
          nodes.push(await startNode(stack, "pair", "pair-b", 1_000_002));
          const [lost, healthy] = nodes;
          const send = chat(stack, "pair");
          lost.gpu("nvml-unknown-error");
          await routerSeesGpuLost(stack, lost, true);

          for (let i = 0; i < 4; i++) assert.equal(servedBy(await send()), healthy.created, `request ${i}`);

          const listing = await xim(
            ["router", "nodes", "--state", join(stack.dir, "router"), "--json"],
            baseEnv(join(home, "cli")),
            60_000,
          );
          assert.equal(listing.code, 0, listing.stderr);
          const shown = (JSON.parse(listing.stdout) as { nodes: NodeListing[] }).nodes;
          const lostShown = shown.find((n) => n.nodeId === lost.nodeId);
          const gpuLost = lostShown?.conditions.find((c) => c.condition === "gpu_lost");
          assert.equal(gpuLost?.severity, "blocking", listing.stdout);
          assert.match(gpuLost?.message ?? "", /NVML: Unknown Error/);
          assert.equal(lostShown?.state, "ready", "the state the node reports");
          assert.deepEqual(shown.find((n) => n.nodeId === healthy.nodeId)?.conditions, []);

          lost.gpu("l40s-x1");
          await routerSeesGpuLost(stack, lost, false);
        },
      );
    },
  );

  test(
    "one node, GPU lost: a request waits in the queue and is served once the GPU answers again",
    TEST_LIMIT,
    async () => {
      const stack = await startRouter({ queueMax: 8, queueTimeoutMs: 120_000 });
      const nodes: GpuNode[] = [];
      await withLogs(
        () => nodes,
        async () => {
          const node = await startNode(stack, "solo", "solo", 1_000_003);
          nodes.push(node);
          node.gpu("nvml-unknown-error");
          await routerSeesGpuLost(stack, node, true);

          let answered = false;
          const response = chat(stack, "solo")().finally(() => {
            answered = true;
          });
          await waitFor(() => stack.service.scheduler.queued() === 1, {
            timeoutMs: 30_000,
            what: "the request held in the queue",
          });
          // Still held while the condition holds: the node renews its lease (still reporting gpu_lost)
          // after the request was queued, and the request has not been answered meanwhile.
          const queuedAt = leaseOf(stack, node)?.lastRenewal ?? 0;
          await waitFor(() => (leaseOf(stack, node)?.lastRenewal ?? 0) > queuedAt, {
            timeoutMs: 30_000,
            what: "a renewal after the request was queued",
          });
          assert.ok(hasGpuLost(leaseOf(stack, node)), "gpu_lost still reported");
          assert.equal(answered, false, "answered while the GPU was lost");
          assert.equal(stack.service.scheduler.queued(), 1);

          node.gpu("l40s-x1");
          await routerSeesGpuLost(stack, node, false);
          assert.equal(servedBy(await response), node.created);
        },
      );
    },
  );
});

describe("a GPU lost mid-run, past the queue's wait", { timeout: 600_000 }, () => {
  test(
    "one node, GPU lost, a short queue wait: 503 naming gpu_lost, with Retry-After; served after it clears",
    TEST_LIMIT,
    async () => {
      // 500 ms: the request is meant to run out of it.
      const stack = await startRouter({ queueMax: 8, queueTimeoutMs: 500 });
      const nodes: GpuNode[] = [];
      await withLogs(
        () => nodes,
        async () => {
          const node = await startNode(stack, "short", "short", 1_000_004);
          nodes.push(node);
          const send = chat(stack, "short");
          node.gpu("nvml-unknown-error");
          await routerSeesGpuLost(stack, node, true);

          const refused = await send();
          assert.equal(refused.status, 503, refused.body.toString());
          assert.ok(Number(refused.headers["retry-after"]) >= 1, JSON.stringify(refused.headers));
          const e = (JSON.parse(refused.body.toString()) as { error: { code: string; message: string } })
            .error;
          assert.equal(e.code, "queue_timeout");
          assert.match(e.message, new RegExp(`node ${node.nodeId} is blocked by gpu_lost \\(`));
          assert.match(e.message, /NVML: Unknown Error/);

          node.gpu("l40s-x1");
          await routerSeesGpuLost(stack, node, false);
          assert.equal(servedBy(await send()), node.created);
        },
      );
    },
  );
});
