/**
 * An enrolled node that asks for model chunks one message at a time and
 * never acknowledges what it got: each reply was handed to ZeroMQ before the
 * next request came, so a limit on requests "being served" never bit, and
 * the replies piled up in ZeroMQ's queue toward the node (messages, not
 * bytes: ~1 GB for 250 chunks of 4 MiB). Every manifest and chunk reply now
 * carries a random receipt that the node echoes in its next requests; the
 * router serves a node only while few replies are unacknowledged. An honest
 * node (the real session and router source) acknowledges as it reads, so
 * its pulls never meet the limit. Real router, real ZeroMQ sockets;
 * measured by the router's own account (`service.models.stats`).
 */
import assert from "node:assert/strict";
import { createHash } from "node:crypto";
import { mkdirSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { after, before, test } from "node:test";
import { NodeSession } from "../../src/agent/session.ts";
import { silentLogger } from "../../src/core/log.ts";
import { enroll } from "../../src/enrollment/enroll.ts";
import { loadEnrollmentState } from "../../src/enrollment/state.ts";
import { ModelLibrary } from "../../src/models/library.ts";
import { RouterSource } from "../../src/models/sources/router.ts";
import type { RouterMessageOf } from "../../src/protocol/messages.ts";
import type { ModelReply } from "../../src/protocol/model-transfer.ts";
import { createJoinKey } from "../../src/router/join-keys.ts";
import { assignModel } from "../../src/router/model-assignments.ts";
import { MAX_MODEL_REQUESTS_PER_NODE } from "../../src/router/model-serving.ts";
import { Stack } from "../helpers/stack.ts";
import { waitFor } from "../router/harness.ts";
import { RogueNode } from "./rogue-node.ts";

const CHUNK = 64 * 1024;
const WEIGHTS = Buffer.alloc(2 * 1024 * 1024);
for (let i = 0; i < WEIGHTS.length; i++) WEIGHTS[i] = (i * 31 + (i >> 16)) & 0xff;

let stack: Stack;
let library: ModelLibrary;
let requestNo = 0;

before(async () => {
  stack = await Stack.start();
  library = new ModelLibrary(join(stack.dir, "router"));
  const folder = join(stack.dir, "model-weights");
  mkdirSync(folder, { recursive: true });
  writeFileSync(join(folder, "config.json"), "{}");
  writeFileSync(join(folder, "weights.bin"), WEIGHTS);
  await library.add("weights", folder);
});

after(async () => {
  await stack?.close();
});

function chunkRequest(receipts?: string[]) {
  return {
    type: "model_request" as const,
    request: {
      type: "model_chunk_request" as const,
      requestId: `r${++requestNo}`,
      name: "weights",
      path: "weights.bin",
      offset: 0,
      length: CHUNK,
      ...(receipts ? { receipts } : {}),
    },
  };
}

/** Send one request as its own ZeroMQ message and wait for its reply. */
async function ask(rogue: RogueNode, message: ReturnType<typeof chunkRequest>): Promise<ModelReply> {
  const reply = rogue.next(
    "model_reply",
    (m: RouterMessageOf<"model_reply">) => m.reply.requestId === message.request.requestId,
  );
  await rogue.send("control", message);
  return (await reply).reply;
}

test("a node that never acknowledges its model replies is served a few and refused after, until it acknowledges or leaves", {
  timeout: 60_000,
}, async () => {
  const rogue = RogueNode.enroll(stack.service);
  try {
    assert.equal((await rogue.register()).type, "register_ack");
    await assignModel(stack.service.store, library, rogue.nodeId, "weights");
    // 250 requests, each its own message, each sent only once the previous
    // reply has arrived: the router has handed every reply to ZeroMQ before
    // the next request, so nothing but acknowledgement can hold it back.
    const receipts: string[] = [];
    const refusals: ModelReply[] = [];
    for (let i = 0; i < 250; i++) {
      const reply = await ask(rogue, chunkRequest());
      if (reply.type === "model_chunk") receipts.push(reply.receipt);
      else refusals.push(reply);
    }
    assert.equal(receipts.length, MAX_MODEL_REQUESTS_PER_NODE, "chunks served without acknowledgement");
    assert.equal(new Set(receipts).size, receipts.length, "every reply has its own receipt");
    for (const r of receipts) assert.match(r, /^[0-9a-f]{32}$/);
    assert.equal(refusals.length, 250 - MAX_MODEL_REQUESTS_PER_NODE);
    const refusal = refusals[0];
    assert.ok(refusal.type === "model_error");
    assert.equal(refusal.code, "unavailable", "retryable");
    assert.ok((refusal.retryAfterMs ?? 0) > 0);
    assert.match(refusal.message, /not yet acknowledged/);
    assert.match(refusal.message, /receipts/);

    let stats = stack.service.models.stats(rogue.nodeId);
    assert.ok(stats, "the router keeps an account of the node's transfers");
    assert.equal(stats.unacknowledged, MAX_MODEL_REQUESTS_PER_NODE);
    assert.equal(stats.unacknowledgedBytes, MAX_MODEL_REQUESTS_PER_NODE * CHUNK);
    assert.equal(stats.refused, 250 - MAX_MODEL_REQUESTS_PER_NODE);

    // Made-up receipts free nothing; they are counted.
    const forged = await ask(rogue, chunkRequest(["0".repeat(32), "f".repeat(32)]));
    assert.equal(forged.type, "model_error");
    stats = stack.service.models.stats(rogue.nodeId);
    assert.ok(stats);
    assert.equal(stats.unknownReceipts, 2);
    assert.equal(stats.unacknowledged, MAX_MODEL_REQUESTS_PER_NODE);

    // Acknowledging what it read frees the slots (a receipt counts once).
    const served = await ask(rogue, chunkRequest(receipts.slice(0, 3)));
    assert.equal(served.type, "model_chunk");
    const again = await ask(rogue, chunkRequest(receipts.slice(0, 3)));
    assert.equal(again.type, "model_chunk");
    stats = stack.service.models.stats(rogue.nodeId);
    assert.ok(stats);
    assert.equal(stats.unacknowledged, MAX_MODEL_REQUESTS_PER_NODE - 3 + 2);
    assert.equal(stats.unknownReceipts, 2 + 3);

    // Leaving: nothing of the node stays accounted.
    await rogue.release();
    await waitFor(() => stack.service.models.stats(rogue.nodeId) === undefined, {
      timeoutMs: 10_000,
      what: "the router to forget the node's unacknowledged replies",
    });
  } finally {
    rogue.close();
  }
});

test("a node that registers again (its old process and receipts gone) starts with a fresh account", {
  timeout: 30_000,
}, async () => {
  const rogue = RogueNode.enroll(stack.service);
  try {
    assert.equal((await rogue.register()).type, "register_ack");
    await assignModel(stack.service.store, library, rogue.nodeId, "weights");
    for (let i = 0; i < MAX_MODEL_REQUESTS_PER_NODE; i++)
      assert.equal((await ask(rogue, chunkRequest())).type, "model_chunk");
    assert.equal((await ask(rogue, chunkRequest())).type, "model_error");
    const oldLease = rogue.lease?.leaseId;
    assert.equal((await rogue.register()).type, "register_ack");
    assert.notEqual(rogue.lease?.leaseId, oldLease);
    assert.equal(stack.service.models.stats(rogue.nodeId), undefined, "the old lease's account is gone");
    assert.equal((await ask(rogue, chunkRequest())).type, "model_chunk");
    assert.equal(stack.service.models.stats(rogue.nodeId)?.unacknowledged, 1);
  } finally {
    rogue.close();
  }
});

test("a model request with more receipts than allowed is not served", { timeout: 30_000 }, async () => {
  const rogue = RogueNode.enroll(stack.service);
  try {
    assert.equal((await rogue.register()).type, "register_ack");
    await assignModel(stack.service.store, library, rogue.nodeId, "weights");
    const tooMany = Array.from({ length: 65 }, (_, i) => i.toString(16).padStart(32, "0"));
    const message = chunkRequest(tooMany);
    await rogue.send("control", message);
    // The schema refuses the message at the boundary; a valid request after it is served.
    const reply = await ask(rogue, chunkRequest());
    assert.equal(reply.type, "model_chunk");
    assert.ok(!rogue.got("model_reply", (m) => m.reply.requestId === message.request.requestId));
    assert.equal(stack.service.models.stats(rogue.nodeId)?.unknownReceipts, 0);
  } finally {
    rogue.close();
  }
});

test("an honest node pulls a model of many chunks twice, byte-identical, never refused", {
  timeout: 60_000,
}, async () => {
  const logger = silentLogger();
  const configDir = join(stack.dir, "honest-node");
  const key = createJoinKey(stack.service.store, stack.service.identity, {
    project: "default",
    uses: 1,
    ttlMs: 60_000,
    labels: {},
  }).key;
  await enroll({ joinKey: key, allowInsecure: false, configDir, logger });
  const state = await loadEnrollmentState(configDir);
  assert.ok(state);
  await assignModel(stack.service.store, library, state.nodeId, "weights");
  const session = new NodeSession({
    state,
    settings: {
      leaseRenewalIntervalMs: 200,
      leaseDurationMs: 5000,
      streamingSocketEnabled: true,
      maxConcurrent: 1,
    },
    logger,
  });
  try {
    void session.start();
    await waitFor(() => session.lease, { timeoutMs: 10_000, what: "registration" });
    // 32 chunks per pull, 4 in flight: far more replies than the limit, so
    // the pull completes only if the node acknowledges as it reads. A second
    // pull with a new source starts with the receipts the first one left.
    for (let pull = 0; pull < 2; pull++) {
      const source = new RouterSource("weights", session.modelChannel(10_000), { chunkBytes: CHUNK });
      const manifest = await source.manifest();
      const file = manifest.files.find((f) => f.path === "weights.bin");
      assert.ok(file);
      const hash = createHash("sha256");
      let bytes = 0;
      for await (const chunk of (await source.fetchFile(file, 0)).body) {
        hash.update(chunk);
        bytes += chunk.byteLength;
      }
      assert.equal(bytes, WEIGHTS.length);
      assert.equal(hash.digest("hex"), createHash("sha256").update(WEIGHTS).digest("hex"));
    }
    const stats = stack.service.models.stats(state.nodeId);
    assert.ok(stats);
    assert.equal(stats.refused, 0, "an honest pull never meets the limit");
    assert.equal(stats.unknownReceipts, 0);
    assert.ok(
      stats.unacknowledged <= 5,
      `at most the last window is unacknowledged: ${stats.unacknowledged}`,
    );
  } finally {
    await session.stop();
  }
});
