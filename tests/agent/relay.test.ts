/**
 * The inference path end to end in one process, with real parts: a client
 * calls the router's OpenAI API over HTTP, the router dispatches over
 * CURVE ZeroMQ to an enrolled node, the node's relay runs the request on
 * a simulated engine (a real HTTP server) and streams the bytes back.
 */
import assert from "node:assert/strict";
import { after, before, describe, test } from "node:test";
import { Secret } from "../../src/core/secret.ts";
import { cacheSalt } from "../../src/engine/cache-salt.ts";
import { chatBody, post, Stack, type StackNode } from "../helpers/stack.ts";
import { waitFor } from "../router/harness.ts";

const SECRET = new Secret("test-secret-for-relay-tests");

describe("relay through router and node", { timeout: 60_000 }, () => {
  let stack: Stack;
  let alpha: StackNode;
  let beta: StackNode;
  let keyA: string;
  let keyB: string;
  let keyA2: string;

  before(async () => {
    // A short queue timeout: a request for a node whose engine died waits this long for it (the
    // router holds requests for a project's unavailable nodes), then gets its 503.
    stack = await Stack.start({ queue: { queueMax: 10, queueTimeoutMs: 2000 } });
    alpha = await stack.addNode({ project: "alpha", sim: { outputTokens: 24 } });
    beta = await stack.addNode({ project: "beta", sim: { outputTokens: 24 } });
    keyA = stack.apiKey("alpha", "tenant-one");
    keyA2 = stack.apiKey("alpha", "tenant-two");
    keyB = stack.apiKey("beta", "tenant-one");
  });
  after(async () => {
    await stack?.close();
  });

  const auth = (key: string, extra: Record<string, string> = {}) => ({
    authorization: `Bearer ${key}`,
    ...extra,
  });
  /** The X-Request-Id the engine got for its last request: the router's internal id, not the client's. */
  const engineIdOfLast = (node: StackNode) => ({
    "x-request-id": node.engine.server.stats().lastRequests.at(-1)?.requestId ?? "",
  });

  test("a streamed completion through router and node equals the engine's own output byte for byte", async () => {
    const body = chatBody({ stream: true, stream_options: { include_usage: true } });
    const viaRouter = await post(
      stack.url,
      "/v1/chat/completions",
      body,
      auth(keyA, { "x-request-id": "byte-check-1" }),
    );
    const direct = await post(
      alpha.engine.baseUrl as string,
      "/v1/chat/completions",
      body,
      engineIdOfLast(alpha),
    );
    assert.equal(viaRouter.status, 200, viaRouter.body.toString());
    assert.equal(viaRouter.headers["x-request-id"], "byte-check-1");
    assert.match(String(viaRouter.headers["content-type"]), /^text\/event-stream/);
    assert.ok(viaRouter.body.toString().endsWith("data: [DONE]\n\n"));
    assert.ok(viaRouter.body.length > 1000, `a real stream (${viaRouter.body.length} bytes)`);
    assert.deepEqual(viaRouter.body, direct.body);
  });

  test("a long stream under a small window (events split at credit boundaries) is still byte for byte", async () => {
    const split = await stack.addNode({
      project: "split",
      sim: { outputTokens: 3000 },
      env: { XEROTIER_AGENT_FLOW_CONTROL_WINDOW_BYTES: "1024" },
    });
    const key = stack.apiKey("split", "t");
    const body = chatBody({ stream: true });
    const viaRouter = await post(
      stack.url,
      "/v1/chat/completions",
      body,
      auth(key, { "x-request-id": "split-1" }),
    );
    const direct = await post(
      split.engine.baseUrl as string,
      "/v1/chat/completions",
      body,
      engineIdOfLast(split),
    );
    assert.equal(viaRouter.body.length, direct.body.length);
    assert.deepEqual(viaRouter.body, direct.body);
    const stats = split.relay.finished.at(-1);
    assert.ok(stats && stats.peakUnacked <= 1024 && stats.chunks > 3000 / 8, `${JSON.stringify(stats)}`);
  });

  test("with the streaming socket off, chunks share the control socket and arrive the same", async () => {
    const shared = await stack.addNode({
      project: "one-socket",
      sim: { outputTokens: 300 },
      env: { XEROTIER_AGENT_STREAMING_SOCKET_ENABLED: "0" },
    });
    assert.equal(stack.service.controlPlane.lease(shared.nodeId)?.streamingRoutingId, null);
    const key = stack.apiKey("one-socket", "t");
    const body = chatBody({ stream: true });
    const viaRouter = await post(
      stack.url,
      "/v1/chat/completions",
      body,
      auth(key, { "x-request-id": "one-1" }),
    );
    const direct = await post(
      shared.engine.baseUrl as string,
      "/v1/chat/completions",
      body,
      engineIdOfLast(shared),
    );
    assert.deepEqual(viaRouter.body, direct.body);
  });

  test("a non-streaming completion works and equals the engine's own answer; completions too", async () => {
    const body = chatBody();
    const viaRouter = await post(
      stack.url,
      "/v1/chat/completions",
      body,
      auth(keyA, { "x-request-id": "ns-1" }),
    );
    const direct = await post(
      alpha.engine.baseUrl as string,
      "/v1/chat/completions",
      body,
      engineIdOfLast(alpha),
    );
    assert.equal(viaRouter.status, 200);
    assert.match(String(viaRouter.headers["content-type"]), /application\/json/);
    assert.deepEqual(viaRouter.body, direct.body);
    assert.equal(JSON.parse(viaRouter.body.toString()).object, "chat.completion");

    const completion = await post(
      stack.url,
      "/v1/completions",
      { model: "sim-model", prompt: "once upon a time", stream: true },
      auth(keyA),
    );
    assert.equal(completion.status, 200);
    assert.match(completion.body.toString(), /"object":"text_completion"/);
  });

  test("X-Request-ID is on every response, generated when absent; errors have OpenAI's shape", async () => {
    const ok = await post(stack.url, "/v1/chat/completions", chatBody(), auth(keyA));
    assert.match(
      String(ok.headers["x-request-id"]),
      /^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/,
    );

    const cases: Array<[string, unknown, Record<string, string>, number, string]> = [
      ["/v1/chat/completions", chatBody(), {}, 401, "invalid_api_key"],
      ["/v1/chat/completions", chatBody(), auth("xak_not-a-key"), 401, "invalid_api_key"],
      ["/v1/chat/completions", "{not json", auth(keyA), 400, "invalid_json"],
      ["/v1/chat/completions", { messages: [] }, auth(keyA), 400, "missing_model"],
      ["/v1/chat/completions", chatBody({ model: "no-such-model" }), auth(keyA), 404, "model_not_found"],
      ["/v1/embeddings", {}, auth(keyA), 404, "not_found"],
    ];
    for (const [path, body, headers, status, code] of cases) {
      const r = await post(stack.url, path, body, { ...headers, "x-request-id": `err-${code}` });
      assert.equal(r.status, status, `${path} ${code}: ${r.body.toString()}`);
      assert.equal(r.headers["x-request-id"], `err-${code}`);
      const e = JSON.parse(r.body.toString()).error;
      assert.equal(e.code, code);
      assert.equal(typeof e.message, "string");
      assert.equal(typeof e.type, "string");
      assert.ok("param" in e);
    }
    const models = await fetch(`${stack.url}/v1/models`, { headers: auth(keyA) });
    assert.ok(models.headers.get("x-request-id"));
    assert.deepEqual(
      ((await models.json()) as { data: { id: string }[] }).data.map((m) => m.id),
      ["sim-model"],
    );
  });

  test("a project-A API key never reaches a project-B node", async () => {
    const a0 = alpha.engine.server.stats().requests;
    const b0 = beta.engine.server.stats().requests;
    for (let i = 0; i < 6; i++) {
      const r = await post(stack.url, "/v1/chat/completions", chatBody(), auth(keyB));
      assert.equal(r.status, 200);
    }
    assert.equal(beta.engine.server.stats().requests - b0, 6);
    assert.equal(alpha.engine.server.stats().requests, a0, "the alpha node got none of beta's requests");
    const other = stack.apiKey("gamma", "t");
    const r = await post(stack.url, "/v1/chat/completions", chatBody(), auth(other));
    assert.equal(r.status, 404, "a project without nodes sees no model, even one another project serves");
  });

  test("two tenants get different salts, one tenant always the same, and a client cache_salt never reaches the engine", async () => {
    // Sent without X-Request-ID, each response names the router's id, which is the engine's.
    const idOf = async (key: string, body = chatBody()) =>
      String((await post(stack.url, "/v1/chat/completions", body, auth(key))).headers["x-request-id"]);
    const saltOf = (id: string) =>
      alpha.engine.server.stats().lastRequests.find((r) => r.requestId === id)?.cacheSalt;
    const salt1 = await idOf(keyA);
    const salt2 = await idOf(keyA);
    const salt3 = await idOf(keyA2);
    const salt4 = await idOf(keyA2, chatBody({ cache_salt: "client-chosen-salt", stream: true }));
    const one = cacheSalt({ project: "alpha", tenant: "tenant-one" }, SECRET);
    const two = cacheSalt({ project: "alpha", tenant: "tenant-two" }, SECRET);
    assert.notEqual(one, two);
    assert.equal(saltOf(salt1), one);
    assert.equal(saltOf(salt2), one);
    assert.equal(saltOf(salt3), two);
    assert.equal(saltOf(salt4), two, "the client's cache_salt was replaced by the tenant's");
    assert.ok(!alpha.engine.server.stats().lastSalts.includes("client-chosen-salt"));
  });

  test("a client that disconnects mid-stream cancels the request at the engine", async () => {
    const slow = await stack.addNode({ project: "slow", sim: { outputTokens: 400, itlMs: 20 } });
    const key = stack.apiKey("slow", "t");
    const abort = new AbortController();
    const res = await fetch(`${stack.url}/v1/chat/completions`, {
      method: "POST",
      headers: { "content-type": "application/json", ...auth(key) },
      body: JSON.stringify(chatBody({ stream: true })),
      signal: abort.signal,
    });
    assert.equal(res.status, 200);
    const reader = (res.body as ReadableStream<Uint8Array>).getReader();
    const first = await reader.read();
    assert.ok(first.value && first.value.length > 0);
    abort.abort();
    await waitFor(() => slow.engine.server.stats().aborts === 1, {
      timeoutMs: 10_000,
      what: "the engine to count the abort",
    });
    await waitFor(() => slow.relay.inFlight === 0 && stack.service.relay.active === 0, {
      timeoutMs: 10_000,
      what: "node and router to free the stream",
    });
    assert.ok(slow.engine.server.stats().generationTokens < 400, "generation stopped early");
    assert.equal(stack.service.scheduler.inflight(slow.nodeId), 0, "the router freed the slot");
  });

  test("a node-side failure mid-stream becomes an SSE error event; a non-streaming one a JSON error", async () => {
    const failing = await stack.addNode({ project: "failing", sim: { outputTokens: 400, itlMs: 20 } });
    const key = stack.apiKey("failing", "t");
    const res = await fetch(`${stack.url}/v1/chat/completions`, {
      method: "POST",
      headers: { "content-type": "application/json", ...auth(key) },
      body: JSON.stringify(chatBody({ stream: true })),
    });
    assert.equal(res.status, 200);
    const reader = (res.body as ReadableStream<Uint8Array>).getReader();
    await reader.read();
    // The engine dies mid-stream (its connections drop, as a crashed vLLM's would).
    await failing.engine.stop(0);
    let text = "";
    for (;;) {
      const { value, done } = await reader.read();
      if (done) break;
      text += Buffer.from(value).toString();
    }
    const events = text.split("\n\n").filter(Boolean);
    const last = events.at(-1) as string;
    assert.match(last, /^data: \{"error":/);
    const err = JSON.parse(last.slice("data: ".length)).error;
    assert.equal(err.code, "engine_error");
    assert.ok(!text.includes("[DONE]"));

    const after = await post(stack.url, "/v1/chat/completions", chatBody(), auth(key));
    assert.ok(after.status >= 500, `status ${after.status}`);
    assert.equal(typeof JSON.parse(after.body.toString()).error.message, "string");
  });

  test("a node process that restarts mid-stream ends that stream with an SSE error, not a hang", async () => {
    const first = await stack.addNode({ project: "restart", sim: { outputTokens: 100_000, itlMs: 10 } });
    const key = stack.apiKey("restart", "t");
    const res = await fetch(`${stack.url}/v1/chat/completions`, {
      method: "POST",
      headers: { "content-type": "application/json", ...auth(key) },
      body: JSON.stringify(chatBody({ stream: true })),
    });
    const reader = (res.body as ReadableStream<Uint8Array>).getReader();
    await reader.read();
    // The same node identity registers from a fresh process (lastEpoch 0), as after a crash and
    // restart: the streams of the old process are gone.
    const second = await stack.addNode({
      project: "restart",
      sameIdentityAs: first,
      sim: { outputTokens: 10 },
    });
    let text = "";
    for (;;) {
      const { value, done } = await reader.read();
      if (done) break;
      text += Buffer.from(value).toString();
    }
    const last = text.split("\n\n").filter(Boolean).at(-1) as string;
    assert.match(last, /^data: \{"error":/);
    assert.equal(JSON.parse(last.slice(6)).error.code, "node_lost");
    for (const n of [first, second]) {
      n.stop();
      n.hardStop();
    }
  });
});
