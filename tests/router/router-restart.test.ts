/**
 * A router that restarts (same state, same ports) does not know its nodes
 * until each registers again, at its next renewal. A request that arrives
 * in between waits for them (up to its queue timeout) and is served,
 * instead of hearing that no node serves its model; a model no node of the
 * project ever served is still a 404 at once. Real parts: the router
 * service, a node with the relay and a simulated engine, HTTP from outside.
 */
import assert from "node:assert/strict";
import { after, before, describe, test } from "node:test";
import { startRouterService } from "../../src/router/service.ts";
import { chatBody, post, Stack } from "../helpers/stack.ts";
import { waitFor } from "./harness.ts";

// A long lease: the restarted router expects the node back for 20 s / 2 + 1 s, ample for the node
// to start again on a loaded 2-core machine; the request is answered as soon as it is back.
const NODE_ENV = {
  XEROTIER_AGENT_LEASE_DURATION_MS: "20000",
  XEROTIER_AGENT_LEASE_RENEWAL_INTERVAL_MS: "200",
};

describe("requests during a router restart", { timeout: 60_000 }, () => {
  let stack: Stack;
  before(async () => {
    stack = await Stack.start();
  });
  after(async () => {
    await stack?.close();
  });

  test("a request sent before the node registers again waits for it and is served", async () => {
    const node = await stack.addNode({ project: "restart", env: NODE_ENV });
    const key = stack.apiKey("restart", "t");
    const first = await post(stack.url, "/v1/chat/completions", chatBody({ max_tokens: 4 }), {
      authorization: `Bearer ${key}`,
    });
    assert.equal(first.status, 200);

    // The router goes down, then the node (its lease stays live in the router's state, as after
    // a crash of both), and the router comes back first: the node is known, not connected.
    const old = stack.service;
    const http = new URL(stack.url);
    await old.close();
    node.stop();
    node.hardStop();
    await node.done;
    stack.service = await startRouterService({
      stateDir: `${stack.dir}/router`,
      enrollListen: { host: "127.0.0.1", port: 0 },
      controlBind: old.endpoints.control,
      streamingBind: old.endpoints.streaming,
      http: { host: "127.0.0.1", port: Number(http.port) },
      logger: stack.logger,
    });
    assert.equal(stack.service.controlPlane.lease(node.nodeId)?.controlRoutingId, null);

    const during = post(stack.url, "/v1/chat/completions", chatBody({ max_tokens: 4 }), {
      authorization: `Bearer ${key}`,
    });
    await waitFor(() => stack.service.scheduler.queued() === 1 || undefined, {
      timeoutMs: 10_000,
      what: "the request to wait for the node",
    });
    const back = await stack.addNode({ project: "restart", env: NODE_ENV, sameIdentityAs: node });
    assert.equal(back.nodeId, node.nodeId);
    const answer = await during;
    assert.equal(answer.status, 200, answer.body.toString());
    assert.match(answer.body.toString(), /"finish_reason":"length"/);
    assert.equal(stack.service.scheduler.queued(), 0);

    const unknown = await post(stack.url, "/v1/chat/completions", chatBody({ model: "no-such-model" }), {
      authorization: `Bearer ${key}`,
    });
    assert.equal(unknown.status, 404);
    assert.equal(JSON.parse(unknown.body.toString()).error.code, "model_not_found");
  });
});
