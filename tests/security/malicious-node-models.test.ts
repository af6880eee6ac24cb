/**
 * An enrolled node that asks the router for models: it may fetch only the
 * model assigned to it, it may not have more than a few requests served at
 * once (a flood of chunk requests whose replies it never reads made the
 * router read and queue a gigabyte), and what its requests hold is
 * forgotten when it leaves. Measured by the router's own account
 * (`service.models.stats`), not RSS. Real router, real ZeroMQ sockets.
 */
import assert from "node:assert/strict";
import { mkdirSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { after, before, test } from "node:test";
import { ModelLibrary } from "../../src/models/library.ts";
import type { RouterMessageOf } from "../../src/protocol/messages.ts";
import type { ModelReply } from "../../src/protocol/model-transfer.ts";
import { assignModel } from "../../src/router/model-assignments.ts";
import { MAX_MODEL_REQUESTS_PER_NODE } from "../../src/router/model-serving.ts";
import { Stack } from "../helpers/stack.ts";
import { waitFor } from "../router/harness.ts";
import { RogueNode } from "./rogue-node.ts";

let stack: Stack;
let rogue: RogueNode;
let requestNo = 0;
/** Receipts of the replies read in one test, acknowledged in the next. */
let readReceipts: string[] = [];

function publish(library: ModelLibrary, name: string) {
  const folder = join(stack.dir, `model-${name}`);
  mkdirSync(folder, { recursive: true });
  writeFileSync(join(folder, "config.json"), "{}");
  writeFileSync(join(folder, "weights.bin"), Buffer.alloc(1024 * 1024, 7));
  return library.add(name, folder);
}

before(async () => {
  stack = await Stack.start();
  const library = new ModelLibrary(join(stack.dir, "router"));
  await publish(library, "assigned-model");
  await publish(library, "someone-elses-model");
  rogue = RogueNode.enroll(stack.service);
  const reply = await rogue.register();
  assert.equal(reply.type, "register_ack");
  await assignModel(stack.service.store, library, rogue.nodeId, "assigned-model");
});

after(async () => {
  rogue?.close();
  await stack?.close();
});

function chunkRequest(name: string) {
  return {
    type: "model_request" as const,
    request: {
      type: "model_chunk_request" as const,
      requestId: `r${++requestNo}`,
      name,
      path: "weights.bin",
      offset: 0,
      length: 64 * 1024,
    },
  };
}

function replyTo(requestId: string): Promise<ModelReply> {
  return rogue
    .next("model_reply", (m: RouterMessageOf<"model_reply">) => m.reply.requestId === requestId)
    .then((m) => m.reply);
}

test("a node cannot fetch a published model that is not assigned to it", { timeout: 30_000 }, async () => {
  for (const request of [
    { type: "model_manifest_request" as const, requestId: `r${++requestNo}`, name: "someone-elses-model" },
    chunkRequest("someone-elses-model").request,
    { type: "model_manifest_request" as const, requestId: `r${++requestNo}`, name: "never-published" },
  ]) {
    const reply = replyTo(request.requestId);
    await rogue.send("control", { type: "model_request", request });
    const r = await reply;
    assert.equal(r.type, "model_error", `${request.name}: ${r.type}`);
    assert.ok(r.type === "model_error");
    assert.equal(r.code, "not_found");
    assert.match(r.message, /is not assigned to this node/);
  }
  // Its own model it gets.
  const own = chunkRequest("assigned-model");
  const reply = replyTo(own.request.requestId);
  await rogue.send("control", own);
  const chunk = await reply;
  assert.equal(chunk.type, "model_chunk");
  assert.ok(chunk.type === "model_chunk");
  readReceipts = [chunk.receipt];
});

test("a node flooding model requests is served a few at a time, refused beyond, and forgotten when it leaves", {
  timeout: 30_000,
}, async () => {
  // 250 requests in one frame: the router reads them all before any file read completes.
  const flood = Array.from({ length: 250 }, () => chunkRequest("assigned-model"));
  // The reply read before is acknowledged, so all the places are free.
  Object.assign(flood[0].request, { receipts: readReceipts });
  const last = replyTo(flood[flood.length - 1].request.requestId);
  await rogue.send("control", ...flood);
  const lastReply = await last;
  assert.equal(lastReply.type, "model_error");
  assert.ok(lastReply.type === "model_error");
  assert.equal(lastReply.code, "unavailable");
  assert.match(
    lastReply.message,
    /not yet acknowledged \(at most \d+ requests in flight or unacknowledged at once\)/,
  );
  assert.ok((lastReply.retryAfterMs ?? 0) > 0);
  const stats = stack.service.models.stats(rogue.nodeId);
  assert.ok(stats, "the router keeps an account of the node's transfers");
  assert.equal(stats.refused, 250 - MAX_MODEL_REQUESTS_PER_NODE);
  assert.ok(stats.outstanding <= MAX_MODEL_REQUESTS_PER_NODE);
  // The ones admitted are served.
  const ids = new Set(flood.map((f) => f.request.requestId));
  await waitFor(
    () =>
      rogue.received.filter(
        (m) => m.type === "model_reply" && ids.has(m.reply.requestId) && m.reply.type === "model_chunk",
      ).length === MAX_MODEL_REQUESTS_PER_NODE,
    { timeoutMs: 10_000, what: "the admitted chunks" },
  );
  // Leaving with requests in flight: nothing of the node stays accounted.
  await rogue.send("control", ...Array.from({ length: 4 }, () => chunkRequest("assigned-model")));
  await rogue.release();
  await waitFor(() => stack.service.models.stats(rogue.nodeId) === undefined, {
    timeoutMs: 10_000,
    what: "the router to forget the node's transfers",
  });
});
