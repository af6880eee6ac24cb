/**
 * The time xim adds, as a user sees it: the router's Server-Timing header
 * on streamed and whole answers and on errors, and the added-time
 * histograms on the router's and the node's /metrics. A real router
 * service and a real node (ZeroMQ, HTTP) with the in-process simulated
 * engine. No figure is compared with a time: only the header's shape and
 * the histograms' counts.
 */
import assert from "node:assert/strict";
import { after, before, test } from "node:test";
import { findFreePort } from "../../src/engine/free-port.ts";
import type { HealthServer } from "../../src/observability/health-server.ts";
import { RequestTiming } from "../../src/router/server-timing.ts";
import { chatBody, post, Stack } from "../helpers/stack.ts";

let stack: Stack;
let key: string;
let nodeMetricsUrl: string;

before(async () => {
  stack = await Stack.start({ metrics: true });
  key = stack.apiKey("default", "acme");
  let server: HealthServer | undefined;
  await stack.addNode({
    // The node's setting takes no port 0: a port the OS just handed out and closed.
    env: {
      XEROTIER_AGENT_DISABLE_METRICS_SERVER: "0",
      XEROTIER_AGENT_METRICS_PORT: String(await findFreePort()),
    },
    onMetrics: (s) => {
      server = s;
    },
  });
  assert.ok(server, "the node's metrics server listens");
  nodeMetricsUrl = `http://127.0.0.1:${server.port}`;
});
after(async () => {
  await stack.close();
});

/** `name;dur=1.234, ...` as a map of name to duration; fails on anything else. */
function parseServerTiming(value: string | string[] | undefined): Map<string, number> {
  assert.equal(typeof value, "string", "one Server-Timing header");
  const out = new Map<string, number>();
  for (const metric of (value as string).split(", ")) {
    const m = /^([a-z]+);dur=(\d+\.\d{3})$/.exec(metric);
    assert.ok(m, `'${metric}' is a Server-Timing metric with a duration in ms`);
    assert.ok(!out.has(m[1]), `${m[1]} appears once`);
    out.set(m[1], Number(m[2]));
  }
  return out;
}

const auth = () => ({ authorization: `Bearer ${key}` });

test("a streamed answer says the queue wait, the router's and the node's own time", {
  timeout: 30_000,
}, async () => {
  const res = await post(stack.url, "/v1/chat/completions", chatBody({ stream: true }), auth());
  assert.equal(res.status, 200);
  assert.match(res.body.toString(), /data: \[DONE\]/);
  assert.deepEqual([...parseServerTiming(res.headers["server-timing"]).keys()], ["queue", "router", "node"]);
});

test("a whole (non-streamed) answer carries the same three", { timeout: 30_000 }, async () => {
  const res = await post(stack.url, "/v1/completions", { model: "sim-model", prompt: "rivers" }, auth());
  assert.equal(res.status, 200);
  assert.deepEqual([...parseServerTiming(res.headers["server-timing"]).keys()], ["queue", "router", "node"]);
});

test("an engine's refusal relayed by the node keeps the node's time", { timeout: 30_000 }, async () => {
  const res = await post(stack.url, "/v1/chat/completions", chatBody({ max_tokens: -1 }), auth());
  assert.equal(res.status, 400);
  assert.deepEqual([...parseServerTiming(res.headers["server-timing"]).keys()], ["queue", "router", "node"]);
});

test("errors the router gives itself say the router's time (and the queue's once asked)", {
  timeout: 30_000,
}, async () => {
  const unauthorized = await post(stack.url, "/v1/chat/completions", chatBody(), {});
  assert.equal(unauthorized.status, 401);
  assert.deepEqual([...parseServerTiming(unauthorized.headers["server-timing"]).keys()], ["router"]);

  const badJson = await post(stack.url, "/v1/chat/completions", "{not json", auth());
  assert.equal(badJson.status, 400);
  assert.deepEqual([...parseServerTiming(badJson.headers["server-timing"]).keys()], ["router"]);

  const unknownModel = await post(
    stack.url,
    "/v1/chat/completions",
    chatBody({ model: "no-such-model" }),
    auth(),
  );
  assert.equal(unknownModel.status, 404);
  assert.deepEqual([...parseServerTiming(unknownModel.headers["server-timing"]).keys()], ["queue", "router"]);
});

/** The `_count` of a histogram in a Prometheus text page. */
async function histogramCount(url: string, name: string): Promise<number> {
  const res = await fetch(`${url}/metrics`, { signal: AbortSignal.timeout(10_000) });
  assert.equal(res.status, 200);
  const text = await res.text();
  assert.match(text, new RegExp(`^# TYPE ${name} histogram$`, "m"), `${name} is exposed`);
  assert.match(text, new RegExp(`^${name}_bucket\\{le="\\+Inf"\\} \\d+$`, "m"));
  const line = text.split("\n").find((l) => l.startsWith(`${name}_count `));
  assert.ok(line, `${name}_count is exposed`);
  return Number(line.split(" ")[1]);
}

test("both /metrics count each request in their added-time histograms", { timeout: 30_000 }, async () => {
  const routerUrl = stack.service.endpoints.metricsUrl as string;
  const routerBefore = await histogramCount(routerUrl, "xim_router_added_seconds");
  const queueBefore = await histogramCount(routerUrl, "xim_router_queue_wait_seconds");
  const nodeBefore = await histogramCount(nodeMetricsUrl, "xim_node_added_seconds");
  const n = 3;
  for (let i = 0; i < n; i++) {
    const res = await post(stack.url, "/v1/chat/completions", chatBody({ stream: i % 2 === 0 }), auth());
    assert.equal(res.status, 200);
  }
  assert.equal(await histogramCount(routerUrl, "xim_router_added_seconds"), routerBefore + n);
  assert.equal(await histogramCount(routerUrl, "xim_router_queue_wait_seconds"), queueBefore + n);
  assert.equal(await histogramCount(nodeMetricsUrl, "xim_node_added_seconds"), nodeBefore + n);
});

test("the header adds up the parts it was told, on an injected clock", () => {
  let now = 100;
  const timing = new RequestTiming(() => now);
  assert.equal(timing.header(), "router;dur=0.000");
  const t = new RequestTiming(() => now);
  now += 0.2; // the front's work
  t.uploadStarted();
  now += 40; // a slow client's body: not the router's time
  t.uploadEnded();
  now += 0.05; // parsing it
  t.queueStarted();
  now += 3; // waited for a slot
  t.queueEnded();
  now += 0.125; // dispatch
  t.dispatched();
  now += 7; // the network, the node, the engine
  t.nodeStarted(1500);
  now += 0.05; // the start turned into headers
  assert.equal(t.header(), "queue;dur=3.000, router;dur=0.425, node;dur=1.500");
  now += 50; // chunks later: the router's share was fixed with the headers
  assert.equal(t.routerMs().toFixed(3), "0.425");
  assert.equal(t.answered, true);
});
