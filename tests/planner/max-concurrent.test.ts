/**
 * The node's concurrency: the ceiling it derives from its settings and
 * engine, and the free slots it reports to the router as they change
 * (not only at the next renewal).
 */
import assert from "node:assert/strict";
import { after, before, describe, test } from "node:test";
import { deriveMaxConcurrent } from "../../src/planner/max-concurrent.ts";
import { chatBody, Stack } from "../helpers/stack.ts";
import { waitFor } from "../router/harness.ts";

test("the in-flight ceiling: setting, plan, --max-num-seqs, vLLM's GPU default, else 5", () => {
  const none = { maxConcurrent: undefined, maxNumSeqs: undefined };
  const h100 = [{ name: "NVIDIA H100 80GB HBM3", memoryTotalMiB: 81559 }];
  const a100 = [{ name: "NVIDIA A100-SXM4-80GB", memoryTotalMiB: 81920 }];
  const l4 = [{ name: "NVIDIA L4", memoryTotalMiB: 23034 }];
  assert.equal(deriveMaxConcurrent({ ...none, maxConcurrent: 7 }, 64, h100), 7);
  assert.equal(deriveMaxConcurrent(none, 64, h100), 64);
  assert.equal(deriveMaxConcurrent({ ...none, maxNumSeqs: 48 }, null, h100), 48);
  assert.equal(deriveMaxConcurrent(none, null, h100), 1024);
  assert.equal(deriveMaxConcurrent(none, null, a100), 256);
  assert.equal(deriveMaxConcurrent(none, null, l4), 256);
  assert.equal(deriveMaxConcurrent(none), 5);
});

describe("free slots reach the router as they change", { timeout: 30_000 }, () => {
  let stack: Stack;
  before(async () => {
    stack = await Stack.start();
  });
  after(async () => {
    await stack?.close();
  });

  test("a running request takes a slot at the router at once and gives it back at the end", async () => {
    const node = await stack.addNode({
      project: "slots",
      sim: { outputTokens: 100_000, itlMs: 10 },
      env: {
        XEROTIER_AGENT_MAX_CONCURRENT: "2",
        XEROTIER_AGENT_LEASE_RENEWAL_INTERVAL_MS: "5000",
        XEROTIER_AGENT_LEASE_DURATION_MS: "20000",
      },
    });
    const key = stack.apiKey("slots", "t");
    const lease = () => stack.service.controlPlane.lease(node.nodeId);
    assert.equal(lease()?.status.maxConcurrent, 2);
    assert.equal(lease()?.status.freeSlots, 2);
    const abort = new AbortController();
    const res = await fetch(`${stack.url}/v1/chat/completions`, {
      method: "POST",
      headers: { "content-type": "application/json", authorization: `Bearer ${key}` },
      body: JSON.stringify(chatBody({ stream: true })),
      signal: abort.signal,
    });
    await (res.body as ReadableStream<Uint8Array>).getReader().read();
    // Renewals are 5 s apart here: a prompt update can only come from node_status.
    await waitFor(() => lease()?.status.freeSlots === 1, {
      timeoutMs: 3000,
      what: "freeSlots 1 at the router",
    });
    abort.abort();
    await waitFor(() => lease()?.status.freeSlots === 2, { timeoutMs: 3000, what: "freeSlots 2 again" });
  });
});
