import assert from "node:assert/strict";
import { after, before, test } from "node:test";
import { createNodeMetrics } from "../../src/observability/node-metrics.ts";
import { Stack } from "../helpers/stack.ts";
import { waitFor } from "../router/harness.ts";

let stack: Stack;
before(async () => {
  stack = await Stack.start();
});
after(async () => {
  await stack.close();
});

async function value(
  registry: { getSingleMetricAsString(name: string): Promise<string> },
  name: string,
  labels = "",
) {
  const text = await registry.getSingleMetricAsString(name);
  const line = text.split("\n").find((l) => l.startsWith(`${name}${labels} `));
  return line ? Number(line.split(" ")[1]) : 0;
}

test("lease renewals show on both sides' metrics; the node reports its lease held", {
  timeout: 30_000,
}, async () => {
  const metrics = createNodeMetrics();
  await stack.addNode({ metrics }); // renews every 200 ms (stack.ts)
  // The counters are synced from the session and the control plane once a second: wait, do not sleep.
  await waitFor(
    async () =>
      (await value(metrics.registry, "xim_node_lease_renewals_total", '{result="ok"}')) >= 2
        ? true
        : undefined,
    {
      timeoutMs: 15_000,
      what: "node renewals in its metrics",
    },
  );
  await waitFor(
    async () =>
      (await value(stack.service.metrics.registry, "xim_router_lease_renewals_total")) >= 2
        ? true
        : undefined,
    { timeoutMs: 15_000, what: "renewals in the router's metrics" },
  );
  assert.equal(await value(metrics.registry, "xim_node_lease_held"), 1);
  assert.equal(await value(metrics.registry, "xim_node_reconnects_total"), 0);
});
