/**
 * What the router does with a node's conditions and with a node that goes
 * offline: a node reporting a blocking condition gets no new requests (a
 * second node takes them; with one node they are held within the queue's
 * limits and served as soon as it clears), its in-flight streams end with
 * an error naming the condition, and a project whose only node's lease
 * expires holds requests until it registers again. Past the limits: a 503
 * naming why, with Retry-After. Real router, real CURVE ZeroMQ: the nodes
 * are RogueNodes the test drives, so the condition is raised and cleared
 * when the test says, not when a timer fires.
 */
import assert from "node:assert/strict";
import { Writable } from "node:stream";
import { after, before, describe, test } from "node:test";
import { createLogger } from "../../src/core/log.ts";
import type { NodeCondition } from "../../src/protocol/conditions.ts";
import type { RouterMessageOf } from "../../src/protocol/messages.ts";
import { chatBody, post, Stack } from "../helpers/stack.ts";
import { RogueNode } from "../security/rogue-node.ts";
import { waitFor } from "./harness.ts";

const GPU_LOST: NodeCondition = {
  condition: "gpu_lost",
  severity: "blocking",
  since: Date.now(),
  message: "GPU 0 stopped answering nvidia-smi",
  fix: "check the GPU with nvidia-smi -q; reset it or restart the machine",
};

/** Answer a dispatch as a node whose engine replied `body` in one piece. */
async function answer(node: RogueNode, d: RouterMessageOf<"dispatch">, body = '{"ok":true}'): Promise<void> {
  await node.send(
    "streaming",
    {
      type: "stream_start",
      requestId: d.requestId,
      status: 200,
      contentType: "application/json",
      windowBytes: d.windowBytes,
      replenishBytes: Math.max(1, d.windowBytes / 2),
    },
    { type: "chunk", requestId: d.requestId, seq: 0, data: Buffer.from(body) },
    { type: "stream_end", requestId: d.requestId, seq: 1 },
  );
}

/** Set what the node reports and send it in a renewal now (not at the next one). */
async function report(stack: Stack, node: RogueNode, conditions: NodeCondition[]): Promise<void> {
  node.conditions = conditions;
  await node.renew();
  await waitFor(
    () => stack.service.controlPlane.lease(node.nodeId)?.conditions.length === conditions.length,
    {
      timeoutMs: 10_000,
      what: "the router to take the node's conditions",
    },
  );
}

async function enrolled(stack: Stack, project: string, o: { leaseMs?: number } = {}): Promise<RogueNode> {
  const node = RogueNode.enroll(stack.service, { project });
  const reply = await node.register(o);
  assert.equal(reply.type, "register_ack", JSON.stringify(reply));
  return node;
}

function errorOf(r: { body: Buffer }): { code: string; message: string } {
  return JSON.parse(r.body.toString()).error;
}

// The queue timeout is long (the limit is never reached by accident on a loaded machine): each
// held request is released by the test clearing the condition or registering the node again.
describe("a blocked or offline node, within the queue's limits", { timeout: 60_000 }, () => {
  let stack: Stack;
  const nodes: RogueNode[] = [];
  before(async () => {
    stack = await Stack.start({ queue: { queueMax: 1, queueTimeoutMs: 60_000 } });
  });
  after(async () => {
    for (const n of nodes) n.close();
    await stack?.close();
  });

  test("a node reporting a blocking condition gets no new requests while a second node takes them", async () => {
    const blocked = await enrolled(stack, "two-nodes");
    const healthy = await enrolled(stack, "two-nodes");
    nodes.push(blocked, healthy);
    await report(stack, blocked, [GPU_LOST]);
    const auth = { authorization: `Bearer ${stack.apiKey("two-nodes", "t")}` };
    for (let i = 0; i < 3; i++) {
      const d = healthy.next("dispatch");
      const response = post(stack.url, "/v1/chat/completions", chatBody(), auth);
      await answer(healthy, await d);
      assert.equal((await response).status, 200);
    }
    assert.equal(blocked.got("dispatch"), false, "the blocked node got a request");
  });

  test("with one node, a request waits while it is blocked and is served as soon as it clears", async () => {
    const node = await enrolled(stack, "one-node");
    nodes.push(node);
    await report(stack, node, [GPU_LOST]);
    const auth = { authorization: `Bearer ${stack.apiKey("one-node", "t")}` };
    const response = post(stack.url, "/v1/chat/completions", chatBody(), auth);
    await waitFor(() => stack.service.scheduler.queued() === 1, {
      timeoutMs: 10_000,
      what: "the request held",
    });
    assert.equal(node.got("dispatch"), false);
    const metrics = await stack.service.metrics.registry.metrics();
    assert.match(metrics, /xim_router_requests_held_total\{reason="blocked"\} 1/);
    assert.match(
      metrics,
      new RegExp(
        `xim_router_node_conditions\\{node="${node.nodeId}",condition="gpu_lost",severity="blocking"\\} 1`,
      ),
    );

    const d = node.next("dispatch");
    await report(stack, node, []);
    await answer(node, await d, '{"served":"after the clear"}');
    const r = await response;
    assert.equal(r.status, 200);
    assert.equal(r.body.toString(), '{"served":"after the clear"}');
    const cleared = await stack.service.metrics.registry.metrics();
    assert.ok(
      !cleared.includes(`xim_router_node_conditions{node="${node.nodeId}"`),
      "a cleared condition's series stays",
    );
  });

  test("past the queue's size a request gets a 503 naming the condition and its fix, with Retry-After", async () => {
    const node = await enrolled(stack, "full");
    nodes.push(node);
    await report(stack, node, [GPU_LOST]);
    const auth = { authorization: `Bearer ${stack.apiKey("full", "t")}` };
    const held = post(stack.url, "/v1/chat/completions", chatBody(), auth);
    await waitFor(() => stack.service.scheduler.queued() === 1, {
      timeoutMs: 10_000,
      what: "the request held",
    });

    const refused = await post(stack.url, "/v1/chat/completions", chatBody(), auth);
    assert.equal(refused.status, 503);
    assert.ok(Number(refused.headers["retry-after"]) >= 1, JSON.stringify(refused.headers));
    const e = errorOf(refused);
    assert.equal(e.code, "queue_full");
    assert.match(e.message, /gpu_lost \(GPU 0 stopped answering nvidia-smi; fix: check the GPU/);

    const d = node.next("dispatch");
    await report(stack, node, []);
    await answer(node, await d);
    assert.equal((await held).status, 200);
  });

  test("the only node's lease expires: a request waits, the node registers again and serves it", async () => {
    // A 1 s lease (renewed every 200 ms until the test stops it); the router checks every 100 ms.
    const node = await enrolled(stack, "expiry", { leaseMs: 1000 });
    nodes.push(node);
    node.stopRenewing();
    await waitFor(() => stack.service.controlPlane.lease(node.nodeId)?.state === "expired", {
      timeoutMs: 15_000,
      what: "the lease to expire",
    });
    const auth = { authorization: `Bearer ${stack.apiKey("expiry", "t")}` };
    const response = post(stack.url, "/v1/chat/completions", chatBody(), auth);
    await waitFor(() => stack.service.scheduler.queued() === 1, {
      timeoutMs: 10_000,
      what: "the request held",
    });

    const d = node.next("dispatch");
    assert.equal((await node.register()).type, "register_ack");
    await answer(node, await d);
    assert.equal((await response).status, 200);
  });

  test("a stream in flight on a node that becomes blocked ends with an error naming the condition", async () => {
    const node = await enrolled(stack, "in-flight");
    nodes.push(node);
    const auth = { authorization: `Bearer ${stack.apiKey("in-flight", "t")}` };
    const d = node.next("dispatch");
    const response = post(stack.url, "/v1/chat/completions", chatBody({ stream: true }), auth);
    const dispatch = await d;
    await node.send(
      "streaming",
      {
        type: "stream_start",
        requestId: dispatch.requestId,
        status: 200,
        contentType: "text/event-stream",
        windowBytes: dispatch.windowBytes,
        replenishBytes: Math.max(1, dispatch.windowBytes / 2),
      },
      { type: "chunk", requestId: dispatch.requestId, seq: 0, data: Buffer.from('data: {"n":1}\n\n') },
    );
    const cancel = node.next("cancel", (m) => m.requestId === dispatch.requestId);
    await report(stack, node, [GPU_LOST]);
    const r = await response;
    assert.equal(r.status, 200);
    const events = r.body.toString().split("\n\n").filter(Boolean);
    assert.equal(events[0], 'data: {"n":1}');
    const e = JSON.parse(events[1].replace(/^data: /, "")).error;
    assert.equal(e.code, "node_blocked");
    assert.match(e.message, /gpu_lost \(GPU 0 stopped answering nvidia-smi; fix: /);
    await cancel;
  });
});

describe("a blocked or offline node, past the queue's wait", { timeout: 60_000 }, () => {
  let stack: Stack;
  const nodes: RogueNode[] = [];
  before(async () => {
    // A short wait: these requests are meant to run out of it.
    stack = await Stack.start({ queue: { queueMax: 1, queueTimeoutMs: 300 } });
  });
  after(async () => {
    for (const n of nodes) n.close();
    await stack?.close();
  });

  test("a request held for a blocked node gets a 503 naming the condition and its fix, with Retry-After", async () => {
    const node = await enrolled(stack, "blocked");
    nodes.push(node);
    await report(stack, node, [GPU_LOST]);
    const auth = { authorization: `Bearer ${stack.apiKey("blocked", "t")}` };
    const r = await post(stack.url, "/v1/chat/completions", chatBody(), auth);
    assert.equal(r.status, 503);
    assert.ok(Number(r.headers["retry-after"]) >= 1, JSON.stringify(r.headers));
    const e = errorOf(r);
    assert.equal(e.code, "queue_timeout");
    assert.match(e.message, /within 300 ms/);
    assert.match(e.message, new RegExp(`node ${node.nodeId} is blocked by gpu_lost \\(GPU 0 stopped`));
    assert.match(e.message, /fix: check the GPU with nvidia-smi -q/);
    assert.equal(node.got("dispatch"), false);
  });

  test("a request for a node that gave its lease back gets a 503 saying since when it is offline", async () => {
    const node = await enrolled(stack, "released");
    nodes.push(node);
    await node.release();
    await waitFor(() => stack.service.controlPlane.lease(node.nodeId)?.state === "expired", {
      timeoutMs: 10_000,
      what: "the release at the router",
    });
    const auth = { authorization: `Bearer ${stack.apiKey("released", "t")}` };
    const r = await post(stack.url, "/v1/chat/completions", chatBody(), auth);
    assert.equal(r.status, 503);
    assert.ok(r.headers["retry-after"]);
    assert.match(
      errorOf(r).message,
      new RegExp(
        `node ${node.nodeId} is offline since \\d{4}-\\d\\d-\\d\\dT[^ ]+ \\(it gave its lease back\\)`,
      ),
    );
  });

  test("a model no node of the project ever served is still a 404 at once", async () => {
    const auth = { authorization: `Bearer ${stack.apiKey("blocked", "t")}` };
    const r = await post(stack.url, "/v1/chat/completions", chatBody({ model: "never-served" }), auth);
    assert.equal(r.status, 404);
    assert.equal(errorOf(r).code, "model_not_found");
  });
});

describe("the router's log of a node's blocking conditions", { timeout: 60_000 }, () => {
  let stack: Stack;
  let node: RogueNode;
  const lines: Array<{ msg: string; nodeId?: string; condition?: string; message?: string }> = [];
  before(async () => {
    const sink = new Writable({
      write(chunk: Buffer, _encoding, done) {
        for (const line of chunk.toString().split("\n")) if (line.trim()) lines.push(JSON.parse(line));
        done();
      },
    });
    stack = await Stack.start({ logger: createLogger({ destination: sink, pretty: false }) });
  });
  after(async () => {
    node?.close();
    await stack?.close();
  });

  test("each change of the blocking set is logged once, not at every renewal", async () => {
    node = await enrolled(stack, "logged");
    await report(stack, node, [GPU_LOST]);
    const isBlocked = (l: { msg: string }) => l.msg.startsWith("node blocked by a condition");
    await waitFor(() => lines.some(isBlocked), { timeoutMs: 10_000, what: "the block logged" });
    // Renewals repeating the same condition (the node renews every 200 ms) log nothing more.
    const renewed = stack.service.controlPlane.counters.renewed;
    await waitFor(() => stack.service.controlPlane.counters.renewed >= renewed + 3, {
      timeoutMs: 15_000,
      what: "three more renewals",
    });
    await report(stack, node, []);
    const blocked = lines.filter(isBlocked);
    assert.equal(blocked.length, 1, JSON.stringify(blocked));
    assert.equal(blocked[0].nodeId, node.nodeId);
    assert.equal(blocked[0].condition, "gpu_lost");
    assert.equal(blocked[0].message, GPU_LOST.message);
    await waitFor(() => lines.some((l) => l.msg.startsWith("node's blocking conditions cleared")), {
      timeoutMs: 10_000,
      what: "the clearing logged",
    });
  });
});
