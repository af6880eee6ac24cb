/**
 * The engine's state reaches the router as it changes: a node whose
 * engine keeps failing (the vllm test double running out of memory)
 * reports `failed` with the classified cause and gets no requests (one
 * sent meanwhile waits the queue's timeout for it, then gets a 503 naming
 * the engine's state); the node itself stays up and holds its lease.
 */
import assert from "node:assert/strict";
import { dirname, join } from "node:path";
import { after, before, describe, test } from "node:test";
import { silentLogger } from "../../src/core/log.ts";
import { createEngine, type EngineSettings } from "../../src/engine/create.ts";
import { chatBody, post, Stack } from "../helpers/stack.ts";
import { BIN } from "../planner/fixtures.ts";
import { waitFor } from "../router/harness.ts";

describe("engine state at the router", { timeout: 60_000 }, () => {
  let stack: Stack;
  before(async () => {
    // A short queue timeout: the request sent to the failed node is meant to run out of it.
    stack = await Stack.start({ queue: { queueMax: 10, queueTimeoutMs: 300 } });
  });
  after(async () => {
    await stack?.close();
  });

  test("an engine that keeps failing is reported failed with its cause, and gets no requests", async () => {
    const engine = createEngine(
      {
        engine: "vllm",
        vllmPath: join(BIN, "vllm"),
        vllmArgs: [],
        vllmEnv: {
          PATH: `${dirname(process.execPath)}:${process.env.PATH ?? ""}`,
          FAKE_VLLM_FAIL_AT_START: "oom",
        },
        gpuMemoryUtilization: 0.9,
        maxModelLen: undefined,
        tensorParallelSize: undefined,
        maxNumSeqs: undefined,
        engineStartupTimeoutSeconds: 60,
        vllmSocketPath: undefined,
      } as EngineSettings,
      {
        model: "/models/demo",
        servedModelName: "demo",
        logger: silentLogger(),
        supervisor: {
          healthIntervalMs: 50,
          maxFailures: 2,
          backoff: { baseMs: 50, maxMs: 200, jitter: "none" },
        },
      },
    );
    const node = await stack.addNode({ project: "oom", engine });
    // A renewal may carry "failed" a moment before the status message with the cause: wait for both.
    await waitFor(
      () =>
        stack.service.controlPlane.lease(node.nodeId)?.status.engine === "failed" &&
        /out-of-memory: out of memory/.test(stack.service.store.getNode(node.nodeId)?.stateReason ?? ""),
      { timeoutMs: 30_000, what: "the failed engine and its cause at the router" },
    );
    assert.equal(stack.service.controlPlane.lease(node.nodeId)?.state, "registered", "live lease, not ready");
    const key = stack.apiKey("oom", "t");
    const r = await post(stack.url, "/v1/chat/completions", chatBody({ model: "demo" }), {
      authorization: `Bearer ${key}`,
    });
    assert.equal(r.status, 503);
    const error = JSON.parse(r.body.toString()).error;
    assert.equal(error.code, "queue_timeout");
    assert.match(error.message, new RegExp(`node ${node.nodeId} has its engine failed`));
  });
});
