/**
 * A model assigned by the router travels to a running node and replaces
 * its engine, all real parts: the router service (CURVE ZeroMQ, HTTPS
 * enrollment, the OpenAI front on an OS port) publishes a model folder,
 * the assignment is written to its store with the function the CLI calls,
 * and a node running `runInferenceNode` (engine=sim: the new engine is a
 * real `xim engine-sim` child serving under the assigned name) pulls it
 * over its own connection with the pull code of `xim pull`.
 */
import assert from "node:assert/strict";
import {
  mkdirSync,
  mkdtempSync,
  readdirSync,
  readFileSync,
  rmSync,
  utimesSync,
  writeFileSync,
} from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, test } from "node:test";
import type { ModelAssignments } from "../../src/agent/model-assignment.ts";
import { runInferenceNode } from "../../src/agent/node.ts";
import { loadConfig } from "../../src/core/config/load.ts";
import { silentLogger } from "../../src/core/log.ts";
import { SimulatedEngine } from "../../src/engine/simulated-engine.ts";
import { enroll } from "../../src/enrollment/enroll.ts";
import { ModelLibrary } from "../../src/models/library.ts";
import { createNodeMetrics } from "../../src/observability/node-metrics.ts";
import type { NodeMessageOf } from "../../src/protocol/messages.ts";
import { createApiKey } from "../../src/router/api-keys.ts";
import { createJoinKey } from "../../src/router/join-keys.ts";
import { assignModel, describeAssignment, unassignModel } from "../../src/router/model-assignments.ts";
import { listNodes } from "../../src/router/nodes.ts";
import { type RouterService, startRouterService } from "../../src/router/service.ts";
import { waitFor } from "../router/harness.ts";

const dir = mkdtempSync(join(tmpdir(), "xim-model-assign-"));
const stateDir = join(dir, "router");
const cacheDir = join(dir, "cache");
const logger = silentLogger();
let service: RouterService;
let library: ModelLibrary;
let nodeId: string;
let apiKey: string;
let assignments: ModelAssignments | undefined;
const stopNode = new AbortController();
const hardStop = new AbortController();
let nodeDone: Promise<unknown> = Promise.resolve();
/** Every model_progress the router received, in order. */
const nodeMetrics = createNodeMetrics();
const progress: Array<NodeMessageOf<"model_progress">> = [];

/** Deterministic bytes, so files compare byte for byte. */
function bytesOf(size: number, seed: number): Buffer {
  const b = Buffer.alloc(size);
  let x = seed * 2654435761;
  for (let i = 0; i < size; i++) {
    x = (x * 1103515245 + 12345) >>> 0;
    b[i] = x >>> 24;
  }
  return b;
}

function modelFolder(name: string, size: number, seed: number): string {
  const d = join(dir, "models", name);
  mkdirSync(join(d, "sub"), { recursive: true });
  writeFileSync(join(d, "config.json"), JSON.stringify({ architectures: ["LlamaForCausalLM"], seed }));
  writeFileSync(join(d, "sub", "model.safetensors"), bytesOf(size, seed));
  return d;
}

async function chat(model: string): Promise<{ status: number; body: string }> {
  const res = await fetch(`${service.endpoints.httpUrl}/v1/chat/completions`, {
    method: "POST",
    headers: { "content-type": "application/json", authorization: `Bearer ${apiKey}` },
    body: JSON.stringify({ model, stream: true, messages: [{ role: "user", content: "hello" }] }),
    signal: AbortSignal.timeout(30_000),
  });
  return { status: res.status, body: await res.text() };
}

function joinKey(): string {
  return createJoinKey(service.store, service.identity, {
    project: "default",
    uses: 1,
    ttlMs: null,
    labels: {},
  }).key;
}

function nodeConfig(configDir: string, key: string) {
  return loadConfig({
    env: {
      XEROTIER_AGENT_CONFIG_DIR: configDir,
      XEROTIER_AGENT_JOIN_KEY: key,
      XEROTIER_AGENT_LEASE_RENEWAL_INTERVAL_MS: "200",
      XEROTIER_AGENT_LEASE_DURATION_MS: "3000",
      XEROTIER_AGENT_DISABLE_METRICS_SERVER: "1",
      XEROTIER_AGENT_ENGINE: "sim",
      XEROTIER_AGENT_VLLM_SALT_SECRET: "test-secret-for-model-assign",
      XEROTIER_AGENT_MODEL_CACHE_DIR: cacheDir,
      XEROTIER_AGENT_MODEL_PULL_BASE_DELAY_MS: "10",
      XEROTIER_AGENT_MODEL_PULL_MAX_DELAY_MS: "50",
      XEROTIER_AGENT_DRAIN_GRACE_SECONDS: "5",
    },
    cwd: dir,
  }).config;
}

function lease() {
  return service.controlPlane.lease(nodeId);
}

/** The `xim engine-sim` children of this process (the node runs in it and starts them). */
function engineProcesses(): number[] {
  const pids: number[] = [];
  for (const entry of readdirSync("/proc")) {
    if (!/^\d+$/.test(entry)) continue;
    try {
      const stat = readFileSync(`/proc/${entry}/stat`, "utf8");
      const ppid = Number(stat.slice(stat.lastIndexOf(")") + 2).split(" ")[1]);
      if (ppid === process.pid && readFileSync(`/proc/${entry}/cmdline`, "utf8").includes("engine-sim"))
        pids.push(Number(entry));
    } catch {
      // the process ended while being read
    }
  }
  return pids.sort((a, b) => a - b);
}

before(async () => {
  service = await startRouterService({
    stateDir,
    enrollListen: { host: "127.0.0.1", port: 0 },
    controlBind: "tcp://127.0.0.1:0",
    streamingBind: "tcp://127.0.0.1:0",
    http: { host: "127.0.0.1", port: 0 },
    logger,
    assignmentPollMs: 200,
  });
  service.controlPlane.onNodeMessage((_l, m) => {
    if (m.type === "model_progress") progress.push(m);
  });
  library = new ModelLibrary(stateDir);
  apiKey = createApiKey(service.store, { project: "default", tenant: "t1" }).key;
  const config = nodeConfig(join(dir, "node"), joinKey());
  // The node starts serving "old-model" (in process); assignments replace it.
  const initial = new SimulatedEngine({
    model: "old-model",
    loadTimeMs: 0,
    ttftMs: 0,
    itlMs: 15,
    outputTokens: 100,
  });
  nodeDone = runInferenceNode({
    config,
    logger,
    launch: undefined,
    engine: initial,
    signal: stopNode.signal,
    hardStop: hardStop.signal,
    env: {},
    metrics: nodeMetrics,
    onAssignments: (a) => {
      assignments = a;
    },
  }).catch((err: unknown) => err);
  const l = await waitFor(
    () => service.controlPlane.leases().find((x) => x.state === "ready" && x.controlRoutingId !== null),
    { timeoutMs: 30_000, what: "the node to be ready at the router" },
  );
  nodeId = l.nodeId;
});

after(async () => {
  stopNode.abort();
  hardStop.abort();
  await nodeDone;
  await service?.close();
  rmSync(dir, { recursive: true, force: true });
});

describe("a model the router assigns reaches a running node", () => {
  test("pulled byte for byte, progress ends in ready, and the node serves it through the router", {
    timeout: 90_000,
  }, async () => {
    // 9 MiB: more than two of the router channel's 4 MiB chunks.
    const folder = modelFolder("tiny", 9 * 1024 * 1024 + 17, 1);
    await library.add("team/tiny", folder);
    assert.equal((await chat("old-model")).status, 200, "the node serves its first model");

    // A stream of the old model in flight during the swap (100 tokens, 15 ms apart) ends whole.
    const inFlight = chat("old-model");
    await waitFor(() => lease()?.status.freeSlots !== lease()?.status.maxConcurrent, {
      timeoutMs: 10_000,
      what: "the old model's stream to start",
    });
    const a = await assignModel(service.store, library, nodeId, "team/tiny");
    const row = await waitFor(
      () => {
        const r = service.store.getAssignment(nodeId);
        return r?.progress?.state === "ready" || r?.progress?.state === "failed" ? r : undefined;
      },
      { timeoutMs: 60_000, what: "the node to report the assigned model ready" },
    );
    assert.equal(row.progress?.state, "ready", row.progress?.message ?? "no message");
    assert.equal(row.assignmentId, a.assignmentId);
    const old = await inFlight;
    assert.equal(old.status, 200);
    assert.match(old.body, /\[DONE\]/, "the in-flight stream finished before the old engine stopped");

    const mine = progress.filter((p) => p.assignmentId === a.assignmentId);
    assert.equal(mine[0].state, "pulling", "the first report is pulling");
    assert.equal(mine.at(-1)?.state, "ready");
    assert.equal(mine.at(-1)?.bytesDone, mine.at(-1)?.bytesTotal);
    assert.equal(
      mine.at(-1)?.bytesTotal,
      9 * 1024 * 1024 + 17 + readFileSync(join(folder, "config.json")).length,
    );
    assert.ok(
      mine.every((p) => ["pulling", "verifying", "ready"].includes(p.state)),
      mine.map((p) => p.state).join(","),
    );
    const metricsText = await nodeMetrics.registry.metrics();
    assert.match(metricsText, /^xim_node_model_pulls_total\{result="ok"\} 1$/m);
    assert.match(
      metricsText,
      new RegExp(`^xim_node_model_pull_bytes_total ${mine.at(-1)?.bytesTotal}$`, "m"),
    );

    const placed = join(cacheDir, "team--tiny");
    assert.deepEqual(
      readFileSync(join(placed, "sub", "model.safetensors")),
      readFileSync(join(folder, "sub", "model.safetensors")),
    );
    assert.deepEqual(readFileSync(join(placed, "config.json")), readFileSync(join(folder, "config.json")));

    await waitFor(() => lease()?.state === "ready" && lease()?.status.models.includes("team/tiny"), {
      timeoutMs: 60_000,
      what: "the node to report team/tiny with a ready engine",
    });
    assert.deepEqual(lease()?.status.models, ["team/tiny"], "the old model is no longer served");
    const reply = await chat("team/tiny");
    assert.equal(reply.status, 200, reply.body);
    assert.match(reply.body, /data: /);
    assert.match(reply.body, /\[DONE\]/);

    const listed = listNodes(service.store).find((n) => n.nodeId === nodeId);
    assert.equal(listed?.assignment?.name, "team/tiny");
    assert.equal(describeAssignment(listed?.assignment ?? null), "router://team/tiny ready");
  });

  test("the same model assigned again is reported ready and the engine process serves on (no restart)", {
    timeout: 60_000,
  }, async () => {
    const before = engineProcesses();
    assert.equal(before.length, 1, "one engine-sim child serves team/tiny");
    const again = await assignModel(service.store, library, nodeId, "team/tiny");
    const row = await waitFor(
      () => {
        const r = service.store.getAssignment(nodeId);
        const state = r?.assignmentId === again.assignmentId ? r.progress?.state : undefined;
        return state === "ready" || state === "failed" ? r : undefined;
      },
      { timeoutMs: 30_000, what: "the node to report the same model ready again" },
    );
    assert.equal(row?.progress?.state, "ready", row?.progress?.message ?? "no message");
    assert.deepEqual(engineProcesses(), before, "the same engine process, not a new one");
    assert.equal(lease()?.status.engine, "ready");
    assert.equal((await chat("team/tiny")).status, 200);
  });

  test("a failed pull reports failed with the reason, the node keeps serving, and a new assignment retries", {
    timeout: 90_000,
  }, async () => {
    const folder = modelFolder("broken", 256 * 1024, 2);
    await library.add("broken", folder);
    // Changed after publishing: the router refuses to send it with a stale digest.
    const weights = join(folder, "sub", "model.safetensors");
    utimesSync(weights, new Date(), new Date(Date.now() + 60_000));
    const a = await assignModel(service.store, library, nodeId, "broken");
    const row = await waitFor(
      () => {
        const r = service.store.getAssignment(nodeId);
        return r?.assignmentId === a.assignmentId && r.progress?.state === "failed" ? r : undefined;
      },
      { timeoutMs: 60_000, what: "the node to report the pull failed" },
    );
    assert.match(row.progress?.message ?? "", /changed on the router since it was published/);
    assert.match(describeAssignment(row), /^router:\/\/broken failed: .*changed on the router/);
    assert.equal(assignments?.lastReport?.state, "failed");

    // The engine in place keeps serving.
    assert.equal(lease()?.state, "ready");
    assert.deepEqual(lease()?.status.models, ["team/tiny"]);
    assert.equal((await chat("team/tiny")).status, 200);

    // Published again (hashed anew) and assigned again: this time it arrives.
    await library.add("broken", folder);
    const again = await assignModel(service.store, library, nodeId, "broken");
    const ok = await waitFor(
      () => {
        const r = service.store.getAssignment(nodeId);
        return r?.assignmentId === again.assignmentId &&
          (r.progress?.state === "ready" || r.progress?.state === "failed")
          ? r
          : undefined;
      },
      { timeoutMs: 60_000, what: "the retried assignment to finish" },
    );
    assert.equal(ok.progress?.state, "ready", ok.progress?.message ?? "no message");
    assert.deepEqual(
      readFileSync(join(cacheDir, "broken", "sub", "model.safetensors")),
      readFileSync(weights),
    );
    await waitFor(() => lease()?.state === "ready" && lease()?.status.models.includes("broken"), {
      timeoutMs: 60_000,
      what: "the node to serve the retried model",
    });
    assert.equal((await chat("broken")).status, 200);
  });

  test("a node without an engine, assigned while offline, gets the model when it registers and starts serving it", {
    timeout: 90_000,
  }, async () => {
    const configDir = join(dir, "node-waiting");
    const enrolled = await enroll({ joinKey: joinKey(), allowInsecure: false, configDir, logger });
    await assignModel(service.store, library, enrolled.nodeId, "team/tiny");
    const stop = new AbortController();
    const hard = new AbortController();
    // No launch and no engine: what `xim run` does for vLLM without XEROTIER_AGENT_INITIAL_MODEL_PATH.
    const done = runInferenceNode({
      config: nodeConfig(configDir, ""),
      logger,
      launch: undefined,
      signal: stop.signal,
      hardStop: hard.signal,
      env: {},
    }).catch((err: unknown) => err);
    try {
      const row = await waitFor(
        () => {
          const r = service.store.getAssignment(enrolled.nodeId);
          return r?.progress?.state === "ready" || r?.progress?.state === "failed" ? r : undefined;
        },
        { timeoutMs: 60_000, what: "the waiting node to report its model ready" },
      );
      assert.equal(row.progress?.state, "ready", row.progress?.message ?? "no message");
      const l = await waitFor(
        () => {
          const x = service.controlPlane.lease(enrolled.nodeId);
          return x?.state === "ready" && x.status.engine === "ready" ? x : undefined;
        },
        { timeoutMs: 60_000, what: "the waiting node's first engine to be ready" },
      );
      assert.deepEqual(l.status.models, ["team/tiny"]);
    } finally {
      stop.abort();
      hard.abort();
      assert.deepEqual(await done, { nodeId: enrolled.nodeId, enrolled: false });
    }
  });

  test("unassign: the running router tells the node to stop the assignment's pull; the engine serves on", {
    timeout: 60_000,
  }, async () => {
    const cp = service.controlPlane;
    const sent: Array<{ nodeId: string; type: string; assignmentId?: string }> = [];
    const send = cp.send.bind(cp);
    cp.send = (to, m) => {
      sent.push({
        nodeId: to,
        type: m.type,
        ...("assignmentId" in m ? { assignmentId: m.assignmentId } : {}),
      });
      return send(to, m);
    };
    try {
      await library.add("team/withdrawn", modelFolder("withdrawn", 3 * 1024 * 1024, 5));
      const serving = lease()?.status.models[0] as string;
      const a = await assignModel(service.store, library, nodeId, "team/withdrawn");
      await waitFor(() => sent.find((m) => m.type === "model_assign" && m.assignmentId === a.assignmentId), {
        timeoutMs: 10_000,
        what: "the assignment to be sent",
      });
      assert.equal(unassignModel(service.store, nodeId).had, true);
      const withdrawn = await waitFor(() => sent.find((m) => m.type === "model_unassign"), {
        timeoutMs: 10_000,
        what: "the router to send model_unassign",
      });
      assert.deepEqual(withdrawn, { nodeId, type: "model_unassign", assignmentId: a.assignmentId });
      await assignments?.settled;
      await waitFor(() => (lease()?.state === "ready" ? lease() : undefined), {
        timeoutMs: 30_000,
        what: "the node to be ready",
      });
      // Withdrawn before or after its pull ended, the node serves on: the old model, or (when the
      // small pull won the race) the new one.
      const model = lease()?.status.models[0] as string;
      assert.ok([serving, "team/withdrawn"].includes(model), model);
      assert.equal((await chat(model)).status, 200);
    } finally {
      cp.send = send;
    }
  });
});
