/**
 * A node whose router dies mid-stream ends that stream when it notices the
 * lost lease, as cancelled: the router failed it (node_lost) or is gone,
 * so its credit never comes. It is not left to wait out the flow-control
 * stall timeout and be counted a credit stall. Real parts: the router
 * service, a node with the relay and a simulated engine, a client over
 * HTTP that stops reading so the stream waits for credit.
 */
import assert from "node:assert/strict";
import { after, before, describe, test } from "node:test";
import { chatBody, Stack, slowRequest } from "../helpers/stack.ts";
import { waitFor } from "../router/harness.ts";

describe("streams of a lost lease", { timeout: 60_000 }, () => {
  let stack: Stack;
  before(async () => {
    stack = await Stack.start();
  });
  after(async () => {
    await stack?.close();
  });

  test("a stream waiting for credit when its router dies ends as cancelled once the lease is lost, not as a stall", async () => {
    const node = await stack.addNode({
      project: "lost",
      sim: { outputTokens: 1_000_000 },
      env: {
        // The node notices a silent router after one lease (1 s).
        XEROTIER_AGENT_LEASE_DURATION_MS: "1000",
        XEROTIER_AGENT_LEASE_RENEWAL_INTERVAL_MS: "200",
        XEROTIER_AGENT_FLOW_CONTROL_WINDOW_BYTES: "4096",
        // Far beyond the test's own limit: the stream can only end by the lost lease.
        XEROTIER_AGENT_FLOW_CONTROL_TIMEOUT_SECONDS: "3600",
      },
    });
    const r = slowRequest(stack.url, "/v1/chat/completions", chatBody({ stream: true }), {
      authorization: `Bearer ${stack.apiKey("lost", "t")}`,
    });
    after(() => r.destroy());
    await r.started;
    // The client reads nothing: the node spends its window and waits for credit.
    await waitFor(() => node.relay.inFlight === 1 && node.relay.ledger.unackedBytes >= 4096, {
      timeoutMs: 20_000,
      what: "the stream to spend its window",
    });

    await stack.service.close();
    // Generous: the lease is lost after 1 s of silence; a loaded 2-core machine may take longer.
    const ended = await waitFor(() => node.relay.finished.at(-1), {
      timeoutMs: 30_000,
      what: "the node to end the stream of its lost lease",
    });
    assert.equal(ended.outcome, "cancelled");
    assert.equal(node.relay.inFlight, 0);
    assert.equal(node.relay.ledger.unackedBytes, 0, "the stream's unacknowledged bytes were released");
    await waitFor(() => node.engine.server.stats().aborts === 1, {
      timeoutMs: 10_000,
      what: "the engine to see the cancel",
    });
  });
});
