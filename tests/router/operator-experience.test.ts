/**
 * What a platform engineer using the official OpenAI SDKs meets, through
 * a real router and node with the simulated engine: a refusal for
 * capacity says when to retry (Retry-After, retry-after-ms), an engine's
 * refusal arrives in OpenAI's error shape and is counted as the client's
 * error on both sides, models.retrieve works, and a request its client
 * gives up on leaves an info line on the router and on the node.
 */
import assert from "node:assert/strict";
import { Writable } from "node:stream";
import { after, before, describe, test } from "node:test";
import { createLogger } from "../../src/core/log.ts";
import { createNodeMetrics } from "../../src/observability/node-metrics.ts";
import { RETRY_AFTER_BOUNDS } from "../../src/router/retry-after.ts";
import { chatBody, post, type RawResponse, Stack } from "../helpers/stack.ts";
import { waitFor } from "./harness.ts";

/** Headers as openai-node 6 sends them (client.ts buildHeaders): the router must not mind the extras. */
function sdkHeaders(key: string): Record<string, string> {
  return {
    accept: "application/json",
    authorization: `Bearer ${key}`,
    "user-agent": "OpenAI/JS 6.9.0",
    "x-stainless-lang": "js",
    "x-stainless-package-version": "6.9.0",
    "x-stainless-os": "Linux",
    "x-stainless-arch": "x64",
    "x-stainless-runtime": "node",
    "x-stainless-runtime-version": "v22.0.0",
    "x-stainless-retry-count": "0",
    "x-stainless-timeout": "600",
  };
}

async function get(url: string, headers: Record<string, string>): Promise<RawResponse> {
  const res = await fetch(url, { headers, signal: AbortSignal.timeout(30_000) });
  return {
    status: res.status,
    headers: Object.fromEntries(res.headers),
    body: Buffer.from(await res.arrayBuffer()),
  };
}

function errorOf(r: RawResponse): Record<string, unknown> {
  return (JSON.parse(r.body.toString()) as { error: Record<string, unknown> }).error;
}

/** The advice of a 503 for capacity: whole seconds and the same wait in ms, within the bounds. */
function assertRetryAdvice(r: RawResponse): void {
  const seconds = Number(r.headers["retry-after"]);
  const ms = Number(r.headers["retry-after-ms"]);
  assert.ok(Number.isInteger(seconds), `Retry-After is whole seconds: ${r.headers["retry-after"]}`);
  assert.ok(
    seconds >= RETRY_AFTER_BOUNDS.MIN_MS / 1000 && seconds <= RETRY_AFTER_BOUNDS.MAX_MS / 1000,
    `Retry-After ${seconds} s`,
  );
  assert.ok(ms >= RETRY_AFTER_BOUNDS.MIN_MS && ms <= RETRY_AFTER_BOUNDS.MAX_MS, `retry-after-ms ${ms}`);
  assert.equal(seconds, Math.ceil(ms / 1000));
}

/** A metric's value in Prometheus text, 0 when the series does not exist. */
function sample(text: string, series: string): number {
  const line = text.split("\n").find((l) => l.startsWith(`${series} `));
  return line ? Number(line.slice(series.length + 1)) : 0;
}

/** A streaming request that runs until aborted; resolves once its first bytes arrived. */
async function longRequest(url: string, key: string, extra: Record<string, string> = {}) {
  const abort = new AbortController();
  const res = await fetch(`${url}/v1/chat/completions`, {
    method: "POST",
    headers: { "content-type": "application/json", authorization: `Bearer ${key}`, ...extra },
    body: JSON.stringify(chatBody({ stream: true })),
    signal: abort.signal,
  });
  assert.equal(res.status, 200);
  const reader = (res.body as ReadableStream<Uint8Array>).getReader();
  await reader.read();
  return { abort: () => abort.abort() };
}

/** The engine writes a token every 10 ms for ever: a request that holds its slot until cancelled. */
const LONG = { outputTokens: 100_000, itlMs: 10 };

describe("what an OpenAI SDK user meets", { timeout: 90_000 }, () => {
  let stack: Stack;
  const lines: Array<Record<string, unknown>> = [];
  const sink = new Writable({
    write(chunk, _enc, cb) {
      for (const l of String(chunk).split("\n")) if (l) lines.push(JSON.parse(l));
      cb();
    },
  });
  before(async () => {
    stack = await Stack.start({
      // Parked requests time out after 1.5 s: long enough to see one parked, short for the test.
      queue: { queueMax: 1, queueTimeoutMs: 1500 },
      logger: createLogger({ destination: sink, pretty: false, level: "info" }),
    });
  });
  after(async () => {
    await stack?.close();
  });

  test("a full single node answers 503 queue_full and queue_timeout with Retry-After within the bounds", async () => {
    await stack.addNode({ project: "full", sim: LONG, env: { XEROTIER_AGENT_MAX_CONCURRENT: "1" } });
    const key = stack.apiKey("full", "t");
    const running = await longRequest(stack.url, key);
    try {
      const parked = post(stack.url, "/v1/chat/completions", chatBody(), { authorization: `Bearer ${key}` });
      await waitFor(() => stack.service.scheduler.queued() === 1, { timeoutMs: 10_000, what: "one parked" });
      const full = await post(stack.url, "/v1/chat/completions", chatBody(), {
        authorization: `Bearer ${key}`,
      });
      assert.equal(full.status, 503);
      assert.equal(errorOf(full).code, "queue_full");
      assert.equal(errorOf(full).type, "server_error");
      assertRetryAdvice(full);
      const timedOut = await parked;
      assert.equal(timedOut.status, 503);
      assert.equal(errorOf(timedOut).code, "queue_timeout");
      assertRetryAdvice(timedOut);
    } finally {
      running.abort();
    }
  });

  test("an engine's 400 (bad max_tokens) reaches the client in OpenAI's shape and counts as a client error on both sides", async () => {
    const nodeMetrics = createNodeMetrics();
    await stack.addNode({ project: "refused", metrics: nodeMetrics });
    const key = stack.apiKey("refused", "t");
    for (const stream of [false, true]) {
      const r = await post(stack.url, "/v1/chat/completions", chatBody({ max_tokens: 0, stream }), {
        authorization: `Bearer ${key}`,
      });
      assert.equal(r.status, 400, `stream=${stream}: ${r.body}`);
      assert.match(String(r.headers["content-type"]), /^application\/json/);
      assert.deepEqual(errorOf(r), {
        message: "max_tokens must be an integer of at least 1",
        type: "invalid_request_error",
        param: "max_tokens",
        code: "invalid_request",
      });
    }
    const router = await stack.service.metrics.registry.metrics();
    assert.equal(sample(router, 'xim_router_requests_total{outcome="client_error"}'), 2);
    assert.equal(sample(router, 'xim_router_requests_total{outcome="ok"}'), 0);
    const node = await nodeMetrics.registry.metrics();
    assert.equal(sample(node, 'xim_node_requests_total{outcome="client_error"}'), 2);
    assert.equal(sample(node, 'xim_node_requests_total{outcome="ok"}'), 0);
  });

  test("models.retrieve as the SDK sends it: the card of a served model, OpenAI's 404 for another, 401 without a key", async () => {
    await stack.addNode({ project: "catalog", sim: { model: "acme/chat-1" } });
    const key = stack.apiKey("catalog", "t");
    // openai-node percent-encodes the id's '/' (its path template); other clients send it raw.
    for (const id of ["acme%2Fchat-1", "acme/chat-1"]) {
      const r = await get(`${stack.url}/v1/models/${id}`, sdkHeaders(key));
      assert.equal(r.status, 200, String(r.body));
      assert.deepEqual(JSON.parse(r.body.toString()), {
        id: "acme/chat-1",
        object: "model",
        created: 0,
        owned_by: "xim",
      });
    }
    const unknown = await get(`${stack.url}/v1/models/gpt-4o`, sdkHeaders(key));
    assert.equal(unknown.status, 404);
    assert.deepEqual(errorOf(unknown), {
      message: "the model 'gpt-4o' does not exist or no node of this project serves it",
      type: "not_found_error",
      param: "model",
      code: "model_not_found",
    });
    // Another project's key does not see this project's models.
    const other = await get(
      `${stack.url}/v1/models/acme%2Fchat-1`,
      sdkHeaders(stack.apiKey("elsewhere", "t")),
    );
    assert.equal(other.status, 404);
    const { authorization: _, ...anonymous } = sdkHeaders(key);
    const noKey = await get(`${stack.url}/v1/models/acme%2Fchat-1`, anonymous);
    assert.equal(noKey.status, 401);
    assert.equal(errorOf(noKey).type, "authentication_error");
    const badEscape = await get(`${stack.url}/v1/models/acme%ZZ`, sdkHeaders(key));
    assert.equal(badEscape.status, 400);
    assert.equal(errorOf(badEscape).code, "invalid_model_id");
  });

  test("a client that cancels its stream leaves one info line on the router and one on the node", async () => {
    await stack.addNode({ project: "cancel", sim: LONG });
    const key = stack.apiKey("cancel", "tenant-a");
    const running = await longRequest(stack.url, key, { "x-request-id": "client-req-42" });
    running.abort();
    const routerLine = await waitFor(
      () => lines.find((l) => l.msg === "request cancelled by its client" && l.project === "cancel"),
      { timeoutMs: 10_000, what: "the router's cancel line" },
    );
    assert.equal(routerLine.level, "info");
    assert.equal(routerLine.clientRequestId, "client-req-42");
    assert.equal(routerLine.tenant, "tenant-a");
    assert.equal(routerLine.model, "sim-model");
    assert.equal(routerLine.queued, false);
    assert.equal(typeof routerLine.ms, "number");
    assert.ok((routerLine.chunks as number) >= 1, `chunks ${routerLine.chunks}`);
    const nodeLine = await waitFor(
      () => lines.find((l) => l.msg === "stream cancelled" && l.requestId === routerLine.requestId),
      { timeoutMs: 10_000, what: "the node's cancel line" },
    );
    assert.equal(nodeLine.level, "info");
    assert.equal(nodeLine.tenant, "tenant-a");
    assert.equal(nodeLine.model, "sim-model");
    assert.match(String(nodeLine.reason), /client disconnected/);
    assert.equal(typeof nodeLine.ms, "number");
    assert.equal(typeof nodeLine.chunks, "number");
  });
});
