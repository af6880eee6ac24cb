/** xim_node_condition: one series per condition held now; a cleared condition's series goes away. */
import assert from "node:assert/strict";
import { test } from "node:test";
import { createNodeMetrics, setConditions } from "../../src/observability/node-metrics.ts";

test("xim_node_condition has a series of 1 per condition, and none once it clears", async () => {
  const metrics = createNodeMetrics();
  const gpu = { condition: "gpu_lost", severity: "blocking" as const, since: 1, message: "m", fix: "f" };
  const disk = {
    condition: "model_cache_disk_low",
    severity: "degraded" as const,
    since: 2,
    message: "m",
    fix: "f",
  };
  setConditions(metrics, [gpu, disk]);
  let text = await metrics.registry.metrics();
  assert.match(text, /^xim_node_condition\{condition="gpu_lost",severity="blocking"\} 1$/m);
  assert.match(text, /^xim_node_condition\{condition="model_cache_disk_low",severity="degraded"\} 1$/m);
  setConditions(metrics, [disk]);
  text = await metrics.registry.metrics();
  assert.doesNotMatch(text, /condition="gpu_lost"/);
  assert.match(text, /condition="model_cache_disk_low"/);
});
