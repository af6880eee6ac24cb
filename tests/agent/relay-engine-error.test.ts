/**
 * An engine request that fails mid-stream, as vLLM reports it (an SSE error
 * event, then `data: [DONE]`; research vllm.md §7, tests/fixtures/vllm/
 * contract.md C15/C16), crosses router and node untouched, and the stream
 * ends cleanly: no stream, slot or credit is left held on either side. The
 * simulated engine fails every request after 10 tokens
 * (`failMidStreamAfter`, the in-process form of `--fail-mid-stream-after`).
 */
import assert from "node:assert/strict";
import { after, before, describe, test } from "node:test";
import { MID_STREAM_ERROR_EVENT } from "../../src/engine/simulated.ts";
import { createNodeMetrics, type NodeMetrics } from "../../src/observability/node-metrics.ts";
import { chatBody, post, Stack, type StackNode } from "../helpers/stack.ts";
import { waitFor } from "../router/harness.ts";

async function gauge(registry: { getSingleMetricAsString(name: string): Promise<string> }, name: string) {
  const line = (await registry.getSingleMetricAsString(name))
    .split("\n")
    .find((l) => l.startsWith(`${name} `));
  return line ? Number(line.split(" ")[1]) : 0;
}

describe("an engine failure mid-request through router and node", { timeout: 60_000 }, () => {
  let stack: Stack;
  let node: StackNode;
  let nodeMetrics: NodeMetrics;
  let key: string;

  before(async () => {
    stack = await Stack.start();
    nodeMetrics = createNodeMetrics();
    node = await stack.addNode({
      project: "failing",
      sim: { outputTokens: 40, failMidStreamAfter: 10 },
      metrics: nodeMetrics,
    });
    key = stack.apiKey("failing", "t");
  });
  after(async () => {
    await stack?.close();
  });

  /** Both sides have let go of every stream: relay and dispatcher, the router's slot and both gauges. */
  async function allReleased(): Promise<void> {
    await waitFor(
      async () =>
        node.relay.inFlight === 0 &&
        stack.service.relay.active === 0 &&
        stack.service.scheduler.inflight(node.nodeId) === 0 &&
        (await gauge(nodeMetrics.registry, "xim_node_streams_in_flight")) === 0 &&
        (await gauge(stack.service.metrics.registry, "xim_router_streams_in_flight")) === 0,
      { timeoutMs: 10_000, what: "node and router to release the stream" },
    );
  }

  test("vLLM's mid-stream error event reaches the client byte for byte, then [DONE]; nothing stays held", async () => {
    const body = chatBody({ stream: true, stream_options: { include_usage: true } });
    const viaRouter = await post(stack.url, "/v1/chat/completions", body, { authorization: `Bearer ${key}` });
    // The engine's ids derive from the request id it got: the router's own, which the response names.
    const headers = { "x-request-id": String(viaRouter.headers["x-request-id"]) };
    const direct = await post(node.engine.baseUrl as string, "/v1/chat/completions", body, headers);
    assert.equal(viaRouter.status, 200, viaRouter.body.toString());
    const text = viaRouter.body.toString("utf8");
    assert.ok(text.endsWith(`${MID_STREAM_ERROR_EVENT}data: [DONE]\n\n`), text.slice(-300));
    assert.equal(
      (text.match(/"delta":\{"content":" ?\w+"\}/g) ?? []).length,
      10,
      "10 tokens before the error",
    );
    assert.deepEqual(viaRouter.body, direct.body, "the router's bytes are the engine's");
    await allReleased();
    assert.equal(node.engine.server.stats().running, 0);
  });

  test("the same failure without stream is vLLM's 500, in OpenAI's error shape; the node serves the next request", async () => {
    const viaRouter = await post(
      stack.url,
      "/v1/completions",
      { model: "sim-model", prompt: "p" },
      {
        authorization: `Bearer ${key}`,
      },
    );
    // vLLM's 500 body reaches the client in OpenAI's error shape, with the engine's message.
    assert.equal(viaRouter.status, 500);
    const error = JSON.parse(viaRouter.body.toString("utf8")).error;
    assert.equal(error.message, "Internal server error");
    assert.equal(error.type, "server_error");
    assert.equal(typeof error.code, "string");
    await allReleased();
    // A request that ends before the failure point still completes: no credit or slot was lost.
    const next = await post(stack.url, "/v1/chat/completions", chatBody({ stream: true, max_tokens: 5 }), {
      authorization: `Bearer ${key}`,
    });
    assert.equal(next.status, 200);
    assert.ok(next.body.toString("utf8").endsWith("data: [DONE]\n\n"));
    assert.ok(!next.body.toString("utf8").includes('"error"'));
    await allReleased();
  });
});
