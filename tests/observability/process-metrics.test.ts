import assert from "node:assert/strict";
import { test } from "node:test";
import { createNodeMetrics } from "../../src/observability/node-metrics.ts";
import { createRouterMetrics } from "../../src/observability/router-metrics.ts";

test("process metrics carry the process's prefix once (xim_node_process_cpu_user_seconds_total)", async () => {
  const node = await createNodeMetrics().registry.metrics();
  const router = await createRouterMetrics().registry.metrics();
  assert.match(node, /^xim_node_process_cpu_user_seconds_total /m);
  assert.match(node, /^xim_node_nodejs_heap_size_used_bytes /m);
  assert.match(router, /^xim_router_process_resident_memory_bytes /m);
  for (const text of [node, router]) assert.doesNotMatch(text, /process_process_/);
});
