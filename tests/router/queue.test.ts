/**
 * The router's node choice and the seed's single-node queueing, through
 * the real stack: a one-slot node with one request running parks ten
 * more, refuses the twelfth with 503, answers the parked ones 503 after
 * the queue timeout, and dispatches a parked one as soon as a slot frees.
 * With several nodes a request goes to one with a free slot, and the
 * requests parked on a node that drains move to another node.
 */
import assert from "node:assert/strict";
import { after, before, describe, test } from "node:test";
import { chatBody, post, Stack } from "../helpers/stack.ts";
import { waitFor } from "./harness.ts";

const QUEUE_TIMEOUT_MS = 4000;

/** A streaming request that runs until aborted (the engine writes a token every 10 ms). */
async function longRequest(url: string, key: string) {
  const abort = new AbortController();
  const res = await fetch(`${url}/v1/chat/completions`, {
    method: "POST",
    headers: { "content-type": "application/json", authorization: `Bearer ${key}` },
    body: JSON.stringify(chatBody({ stream: true })),
    signal: abort.signal,
  });
  assert.equal(res.status, 200);
  const reader = (res.body as ReadableStream<Uint8Array>).getReader();
  await reader.read();
  return {
    abort: () => abort.abort(),
    rest: async () => {
      let text = "";
      for (;;) {
        const { value, done } = await reader.read();
        if (done) return text;
        text += Buffer.from(value).toString();
      }
    },
  };
}

const LONG = { outputTokens: 100_000, itlMs: 10 };
const ONE_SLOT = { XEROTIER_AGENT_MAX_CONCURRENT: "1" };

describe("node choice and single-node queueing", { timeout: 60_000 }, () => {
  let stack: Stack;
  before(async () => {
    stack = await Stack.start({ queue: { queueMax: 10, queueTimeoutMs: QUEUE_TIMEOUT_MS } });
  });
  after(async () => {
    await stack?.close();
  });

  test("11 requests to a one-slot node: 1 runs, 10 queue, the 12th gets 503, queued ones get 503 after the timeout", async () => {
    const node = await stack.addNode({ project: "single", sim: LONG, env: ONE_SLOT });
    const key = stack.apiKey("single", "t");
    const running = await longRequest(stack.url, key);
    assert.equal(node.relay.inFlight, 1);
    const started = Date.now();
    const queued = Array.from({ length: 10 }, () =>
      post(stack.url, "/v1/chat/completions", chatBody({ max_tokens: 3 }), {
        authorization: `Bearer ${key}`,
      }),
    );
    await waitFor(() => stack.service.scheduler.queued(node.nodeId) === 10, {
      timeoutMs: 10_000,
      what: "ten parked requests",
    });
    const twelfth = await post(stack.url, "/v1/chat/completions", chatBody(), {
      authorization: `Bearer ${key}`,
    });
    assert.equal(twelfth.status, 503);
    assert.equal(JSON.parse(twelfth.body.toString()).error.code, "queue_full");
    assert.ok(twelfth.headers["x-request-id"]);

    const answers = await Promise.all(queued);
    const waited = Date.now() - started;
    for (const a of answers) {
      assert.equal(a.status, 503);
      assert.equal(JSON.parse(a.body.toString()).error.code, "queue_timeout");
    }
    assert.ok(waited >= QUEUE_TIMEOUT_MS - 100, `answered after the queue timeout (${waited} ms)`);
    assert.equal(node.relay.inFlight, 1, "the running request kept its slot throughout");
    assert.equal(stack.service.scheduler.queued(), 0);
    running.abort();
  });

  test("a parked request is dispatched as soon as the slot frees", async () => {
    const node = await stack.addNode({ project: "handoff", sim: LONG, env: ONE_SLOT });
    const key = stack.apiKey("handoff", "t");
    const running = await longRequest(stack.url, key);
    const parked = post(stack.url, "/v1/chat/completions", chatBody({ max_tokens: 3 }), {
      authorization: `Bearer ${key}`,
    });
    await waitFor(() => stack.service.scheduler.queued(node.nodeId) === 1, {
      timeoutMs: 10_000,
      what: "the parked request",
    });
    running.abort();
    const answer = await parked;
    assert.equal(answer.status, 200, answer.body.toString());
    assert.equal(JSON.parse(answer.body.toString()).object, "chat.completion");
  });

  test("with several nodes a request goes to one with a free slot; when all are full it gets 503 at once", async () => {
    const a = await stack.addNode({ project: "multi", sim: LONG, env: ONE_SLOT });
    const b = await stack.addNode({ project: "multi", sim: LONG, env: ONE_SLOT });
    const key = stack.apiKey("multi", "t");
    const first = await longRequest(stack.url, key);
    const second = await longRequest(stack.url, key);
    assert.equal(a.relay.inFlight, 1);
    assert.equal(b.relay.inFlight, 1);
    const third = await post(stack.url, "/v1/chat/completions", chatBody(), {
      authorization: `Bearer ${key}`,
    });
    assert.equal(third.status, 503);
    assert.equal(JSON.parse(third.body.toString()).error.code, "no_capacity");
    first.abort();
    second.abort();
  });

  test("a draining node gets no new requests and its parked requests go to another node", async () => {
    const x = await stack.addNode({
      project: "move",
      sim: LONG,
      env: { ...ONE_SLOT, XEROTIER_AGENT_DRAIN_GRACE_SECONDS: "1" },
    });
    const key = stack.apiKey("move", "t");
    const running = await longRequest(stack.url, key);
    const parked = post(stack.url, "/v1/chat/completions", chatBody({ max_tokens: 3 }), {
      authorization: `Bearer ${key}`,
    });
    await waitFor(() => stack.service.scheduler.queued(x.nodeId) === 1, {
      timeoutMs: 10_000,
      what: "the parked request",
    });
    const y = await stack.addNode({ project: "move", sim: LONG, env: ONE_SLOT });
    const yBefore = y.engine.server.stats().requests;
    x.stop(); // SIGTERM: drain
    const answer = await parked;
    assert.equal(answer.status, 200, answer.body.toString());
    assert.equal(y.engine.server.stats().requests - yBefore, 1, "the parked request ran on the other node");
    // The drained node's own stream is cancelled after its 1 s grace, as an SSE error event
    // (node_lost when the node's last message lost the race with its lease release).
    const rest = await running.rest();
    assert.match(rest, /data: \{"error":\{[^\n]*"code":"(draining|node_lost)"/, rest.slice(-400));
    await x.done;
    const lease = stack.service.controlPlane.lease(x.nodeId);
    assert.equal(lease?.state, "expired", "the drained node released its lease");
  });
});
