/**
 * Attack: two projects that both name a tenant `acme` must not share a
 * prefix cache. Nodes of different projects may share one (an LMCache
 * store, and one salt secret across a fleet); before the fix the salt was
 * the HMAC of the tenant alone, so `acme` of project A and `acme` of
 * project B got the same `cache_salt` and could probe each other's cached
 * prompts. The stack is all real parts in this process (router service,
 * CURVE ZeroMQ, nodes relaying to simulated engines over loopback HTTP),
 * every node with the same salt secret; the engines report the
 * `cache_salt` each request arrived with.
 */
import assert from "node:assert/strict";
import { after, before, describe, test } from "node:test";
import { chatBody, post, Stack, type StackNode } from "../helpers/stack.ts";
import { waitFor } from "../router/harness.ts";

describe("tenant salts are per project", { timeout: 120_000 }, () => {
  let stack: Stack;

  before(async () => {
    stack = await Stack.start();
  });
  after(() => stack?.close());

  /** The cache_salt the node's engine received for one request of `tenant` in `project` (`requestId` names it in messages). */
  async function saltAt(
    node: StackNode,
    project: string,
    tenant: string,
    requestId: string,
  ): Promise<string> {
    const key = stack.apiKey(project, tenant);
    // Sent without X-Request-ID, the response names the router's own id, which is the one the engine gets.
    const r = await post(stack.url, "/v1/chat/completions", chatBody(), { authorization: `Bearer ${key}` });
    assert.equal(r.status, 200, r.body.toString());
    const routerId = String(r.headers["x-request-id"]);
    const record = node.engine.server.stats().lastRequests.find((x) => x.requestId === routerId);
    assert.ok(record?.cacheSalt, `the engine of ${project} received ${requestId} with a salt`);
    return record.cacheSalt;
  }

  test("tenant acme in two projects reaches the engines with two different cache_salt values", async () => {
    const alpha = await stack.addNode({ project: "alpha" });
    const beta = await stack.addNode({ project: "beta" });
    const a = await saltAt(alpha, "alpha", "acme", "salt-alpha");
    const b = await saltAt(beta, "beta", "acme", "salt-beta");
    assert.notEqual(a, b, "one tenant name in two projects shares no cache");
    assert.match(a, /^[0-9a-f]{64}$/);
  });

  test("the same project and tenant get the same salt on two nodes with the same salt secret", async () => {
    const first = await stack.addNode({ project: "gamma" });
    const one = await saltAt(first, "gamma", "acme", "salt-gamma-1");
    // The second node serves alone, so the request certainly reaches it (no scheduling luck).
    first.stop();
    first.hardStop();
    await first.done;
    await waitFor(() => stack.service.controlPlane.lease(first.nodeId)?.state !== "ready", {
      timeoutMs: 20_000,
      what: "the router to stop counting the first node as ready",
    });
    const second = await stack.addNode({ project: "gamma" });
    const two = await saltAt(second, "gamma", "acme", "salt-gamma-2");
    assert.equal(one, two, "one tenant's cache stays warm across the project's nodes");
  });
});
