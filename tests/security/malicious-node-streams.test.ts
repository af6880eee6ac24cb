/**
 * An enrolled node that tries to make the router hold its memory through
 * a stream: SSE bytes that never end an event, flow control switched off,
 * bytes sent beyond its credit. Each time the node loses that stream (the
 * client gets a relay_error, the node a cancel), the router's account of
 * what the stream held (`relay.buffered()`) stays within the limits and is
 * empty afterwards, and the node's other streams go on. The router, its
 * HTTP front and the node's sockets are real, on loopback.
 */
import assert from "node:assert/strict";
import { after, before, test } from "node:test";
import type { RouterMessageOf } from "../../src/protocol/messages.ts";
import { DEFAULT_MAX_EVENT_BYTES } from "../../src/router/stream-limits.ts";
import { chatBody, post, Stack } from "../helpers/stack.ts";
import { waitFor } from "../router/harness.ts";
import { RogueNode } from "./rogue-node.ts";

let stack: Stack;
let rogue: RogueNode;
let auth: Record<string, string>;

before(async () => {
  stack = await Stack.start();
  rogue = RogueNode.enroll(stack.service);
  const reply = await rogue.register();
  assert.equal(reply.type, "register_ack", JSON.stringify(reply));
  auth = { authorization: `Bearer ${stack.apiKey("default", "t")}` };
});

after(async () => {
  rogue?.close();
  await stack?.close();
});

/** Start a streaming request and wait for the rogue node to receive its dispatch. */
async function dispatched() {
  const dispatch = rogue.next("dispatch");
  const response = post(stack.url, "/v1/chat/completions", chatBody({ stream: true }), auth);
  return { dispatch: await dispatch, response };
}

function start(d: RouterMessageOf<"dispatch">, windowBytes = d.windowBytes) {
  return rogue.send("streaming", {
    type: "stream_start",
    requestId: d.requestId,
    status: 200,
    contentType: "text/event-stream",
    windowBytes,
    replenishBytes: Math.max(1, windowBytes / 2),
  });
}

/** Credit the router granted a stream so far. */
function granted(requestId: string): number {
  return rogue.received
    .filter((m): m is RouterMessageOf<"credit"> => m.type === "credit" && m.requestId === requestId)
    .reduce((sum, m) => sum + m.bytes, 0);
}

function cancelled(requestId: string): boolean {
  return rogue.got("cancel", (m) => m.requestId === requestId);
}

test("a node that never ends an SSE event loses that stream at the event limit, and its other stream goes on", {
  timeout: 60_000,
}, async () => {
  const bad = await dispatched();
  const good = await dispatched();
  const id = bad.dispatch.requestId;
  await start(bad.dispatch);
  await start(good.dispatch);
  await rogue.send("streaming", {
    type: "chunk",
    requestId: good.dispatch.requestId,
    seq: 0,
    data: Buffer.from('data: {"n":1}\n\n'),
  });
  // Play by the credit rules, so only the event limit can stop it; give up at 3x the limit.
  const piece = Buffer.alloc(16 * 1024, "a");
  let sent = 0;
  let seq = 0;
  let maxHeld = 0;
  await rogue.send("streaming", { type: "chunk", requestId: id, seq: seq++, data: Buffer.from("data: ") });
  while (!cancelled(id) && sent < 3 * DEFAULT_MAX_EVENT_BYTES) {
    const allowance = bad.dispatch.windowBytes + granted(id) - sent - 6;
    if (allowance < piece.length) {
      await new Promise((r) => setTimeout(r, 5));
      continue;
    }
    await rogue.send("streaming", { type: "chunk", requestId: id, seq: seq++, data: piece });
    sent += piece.length;
    // (`?.`: the same test ran against the router before it kept this account.)
    maxHeld = Math.max(maxHeld, stack.service.relay.buffered?.().get(id)?.heldEventBytes ?? 0);
  }
  await waitFor(() => cancelled(id), { timeoutMs: 10_000, what: "the router to cancel the stream" });
  // The cancel takes a moment to arrive: the node may have spent the credit it held by then.
  const bound = DEFAULT_MAX_EVENT_BYTES + bad.dispatch.windowBytes + piece.length;
  assert.ok(sent <= bound, `the node got to send ${sent} bytes of one event`);
  assert.ok(maxHeld <= DEFAULT_MAX_EVENT_BYTES, `held ${maxHeld} bytes`);
  const failed = await bad.response;
  assert.equal(failed.status, 200);
  assert.match(failed.body.toString(), /data: \{"error":.*without its end.*"code":"relay_error"/);
  assert.equal(stack.service.relay.buffered().has(id), false, "the stream's memory is freed");
  // The other stream of the same node is untouched.
  await rogue.send("streaming", {
    type: "chunk",
    requestId: good.dispatch.requestId,
    seq: 1,
    data: Buffer.from("data: [DONE]\n\n"),
  });
  await rogue.send("streaming", { type: "stream_end", requestId: good.dispatch.requestId, seq: 2 });
  const ok = await good.response;
  assert.equal(ok.body.toString(), 'data: {"n":1}\n\ndata: [DONE]\n\n');
});

test("a node that switches flow control off for a stream (window 0) loses it", {
  timeout: 30_000,
}, async () => {
  const { dispatch, response } = await dispatched();
  await start(dispatch, 0);
  await waitFor(() => cancelled(dispatch.requestId), {
    timeoutMs: 5000,
    what: "the router to cancel the stream",
  });
  const r = await response;
  assert.equal(r.status, 502);
  assert.match(r.body.toString(), /relay_error/);
  assert.match(r.body.toString(), /flow control off/);
});

test("a node that announces a window above the router's loses the stream", { timeout: 30_000 }, async () => {
  const { dispatch, response } = await dispatched();
  await start(dispatch, dispatch.windowBytes * 64);
  await waitFor(() => cancelled(dispatch.requestId), {
    timeoutMs: 5000,
    what: "the router to cancel the stream",
  });
  const r = await response;
  assert.equal(r.status, 502);
  assert.match(r.body.toString(), /credit window of \d+ bytes; accepted: 1024 to 65536/);
});

test("a node that sends beyond its credit loses the stream, and nothing of it stays held", {
  timeout: 30_000,
}, async () => {
  const { dispatch, response } = await dispatched();
  const id = dispatch.requestId;
  // The router's own count of credit granted (the node sees it a moment later, on another socket).
  const creditBefore = (await stack.service.metrics.creditsGranted.get()).values[0]?.value ?? 0;
  await start(dispatch);
  // Whole events, all in one frame: no credit can come back before the router reads them all.
  const event = Buffer.from(`data: ${"b".repeat(16 * 1024 - 8)}\n\n`);
  const chunks = Array.from({ length: Math.ceil((dispatch.windowBytes * 3) / event.length) }, (_, seq) => ({
    type: "chunk" as const,
    requestId: id,
    seq,
    data: event,
  }));
  await rogue.send("streaming", ...chunks);
  await waitFor(() => cancelled(id), { timeoutMs: 5000, what: "the router to cancel the stream" });
  const r = await response;
  assert.match(r.body.toString(), /more bytes than its credit allowed/);
  // What reached the client is at most what the node was allowed to send (plus the error event).
  const creditAfter = (await stack.service.metrics.creditsGranted.get()).values[0]?.value ?? 0;
  const allowed = dispatch.windowBytes + creditAfter - creditBefore;
  assert.ok(r.body.length <= allowed + 1024, `the client got ${r.body.length} bytes, allowed ${allowed}`);
  assert.ok(r.body.length < event.length * chunks.length, "the stream was cut before its end");
  assert.equal(stack.service.relay.buffered().has(id), false);
});

test("a node announcing flow control off at registration is refused with a reason", {
  timeout: 30_000,
}, async () => {
  const other = RogueNode.enroll(stack.service);
  try {
    const reply = await other.register({ windowBytes: 0 });
    assert.equal(reply.type, "register_refused", JSON.stringify(reply));
    assert.ok(reply.type === "register_refused");
    assert.equal(reply.code, "flow_control");
    assert.match(reply.message, /flow control off/);
    assert.equal(stack.service.controlPlane.lease(other.nodeId), undefined);
  } finally {
    other.close();
  }
});
