import assert from "node:assert/strict";
import { test } from "node:test";
import { startHealthServer } from "../../src/observability/health-server.ts";
import { createNodeMetrics, setEngineState } from "../../src/observability/node-metrics.ts";

test("healthz stays 200 while readyz follows the engine and the lease; metrics are Prometheus text", {
  timeout: 10_000,
}, async () => {
  const metrics = createNodeMetrics();
  let ready = { ready: false, reasons: ["engine loading", "no lease"] };
  const server = await startHealthServer({
    host: "127.0.0.1",
    port: 0,
    registry: metrics.registry,
    readiness: () => ready,
  });
  const base = `http://127.0.0.1:${server.port}`;
  try {
    assert.equal((await fetch(`${base}/healthz`)).status, 200);
    const notReady = await fetch(`${base}/readyz`);
    assert.equal(notReady.status, 503);
    assert.deepEqual(await notReady.json(), { ready: false, reasons: ["engine loading", "no lease"] });

    ready = { ready: true, reasons: [] };
    assert.equal((await fetch(`${base}/readyz`)).status, 200);

    metrics.requests.inc({ outcome: "ok" }, 3);
    setEngineState(metrics, "ready");
    const text = await (await fetch(`${base}/metrics`)).text();
    assert.match(text, /^xim_node_requests_total\{outcome="ok"\} 3$/m);
    assert.match(text, /^xim_node_engine_state\{state="ready"\} 1$/m);
    assert.match(text, /^xim_node_engine_state\{state="loading"\} 0$/m);
    assert.equal((await fetch(`${base}/nope`)).status, 404);
  } finally {
    await server.close();
  }
});
