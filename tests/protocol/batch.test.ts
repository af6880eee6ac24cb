import assert from "node:assert/strict";
import { test } from "node:test";
import fc from "fast-check";
import { Packr } from "msgpackr";
import { decodeNodeMessages, encodeBatch, encodeMessage } from "../../src/protocol/codec.ts";
import { PROTOCOL_VERSION } from "../../src/protocol/version.ts";
import { BatchSender, MAX_BATCH_MESSAGES } from "../../src/transport/batch-sender.ts";

const chunk = (seq: number) =>
  encodeMessage({ type: "chunk", requestId: "req-1", seq, data: Buffer.from(`data: ${seq}\n\n`) });

test("a batch frame decodes to its messages, in order", () => {
  const results = decodeNodeMessages(encodeBatch([chunk(0), chunk(1), chunk(2)]));
  assert.deepEqual(
    results.map((r) => (r.ok && r.message.type === "chunk" ? r.message.seq : r)),
    [0, 1, 2],
  );
});

test("a bad message inside a batch is reported beside the good ones; trailing garbage ends the frame", () => {
  const unknown = new Packr({ useRecords: false }).pack({ v: PROTOCOL_VERSION, type: "launch_missiles" });
  const results = decodeNodeMessages(Buffer.concat([chunk(0), unknown, chunk(1), Buffer.from([0xc1])]));
  assert.deepEqual(
    results.map((r) => (r.ok ? "ok" : r.reason)),
    ["ok", "unknown_type", "ok", "malformed"],
  );
});

test("random bytes never throw and always give at least one result", () => {
  fc.assert(
    fc.property(fc.uint8Array({ minLength: 0, maxLength: 300 }), (bytes) => {
      assert.ok(decodeNodeMessages(bytes).length >= 1);
    }),
    { numRuns: 2000 },
  );
});

test("the sender coalesces messages queued in one turn into one frame, and sends a lone message alone", async () => {
  const sent: Buffer[] = [];
  const sender = new BatchSender(
    async (frame) => {
      sent.push(frame);
    },
    () => false,
  );
  const all = await Promise.all([sender.push(chunk(0)), sender.push(chunk(1)), sender.push(chunk(2))]);
  assert.deepEqual(all, [true, true, true]);
  assert.equal(sent.length, 1);
  assert.equal(decodeNodeMessages(sent[0]).length, 3);
  await sender.push(chunk(3));
  assert.equal(sent.length, 2);
  assert.deepEqual(sent[1], chunk(3));
});

test("a closed socket or a failed send resolves false and is counted", async () => {
  let closed = false;
  const sender = new BatchSender(
    async () => {
      throw new Error("peer gone");
    },
    () => closed,
  );
  assert.equal(await sender.push(chunk(0)), false);
  assert.equal(sender.failures, 1);
  closed = true;
  assert.equal(await sender.push(chunk(1)), false);
  assert.equal(sender.failures, 1);
});

test("a ROUTER socket's batch: one frame per destination, each destination's messages in order", async () => {
  const sent: Array<{ to: string; seqs: number[] }> = [];
  const sender = new BatchSender(
    async (frame, to) => {
      sent.push({
        to,
        seqs: decodeNodeMessages(frame).map((r) => (r.ok && r.message.type === "chunk" ? r.message.seq : -1)),
      });
    },
    () => false,
  );
  await Promise.all([
    sender.push(chunk(0), "a"),
    sender.push(chunk(1), "b"),
    sender.push(chunk(2), "a"),
    sender.push(chunk(3), "b"),
    sender.push(chunk(4), "c"),
  ]);
  assert.deepEqual(sent, [
    { to: "a", seqs: [0, 2] },
    { to: "b", seqs: [1, 3] },
    { to: "c", seqs: [4] },
  ]);
});

test("a batch never passes MAX_BATCH_MESSAGES, and what stays behind keeps its order", async () => {
  const sent: number[][] = [];
  const sender = new BatchSender(
    async (frame) => {
      sent.push(
        decodeNodeMessages(frame).map((r) => (r.ok && r.message.type === "chunk" ? r.message.seq : -1)),
      );
    },
    () => false,
  );
  const n = MAX_BATCH_MESSAGES + 10;
  await Promise.all(Array.from({ length: n }, (_, i) => sender.push(chunk(i))));
  assert.deepEqual(
    sent.map((s) => s.length),
    [MAX_BATCH_MESSAGES, 10],
  );
  assert.deepEqual(
    sent.flat(),
    Array.from({ length: n }, (_, i) => i),
  );
});

test("with a hold, the first message leaves at once and a fast run after it waits for the hold", async () => {
  const at: number[] = [];
  const sender = new BatchSender(
    async () => {
      at.push(performance.now());
    },
    () => false,
    20,
  );
  const t0 = performance.now();
  await sender.push(chunk(0));
  // Generous bounds: the hold is a floor (less the timer's millisecond rounding), the first send has no timer.
  assert.ok(at[0] - t0 < 15, `the first send waited ${at[0] - t0} ms`);
  await Promise.all([sender.push(chunk(1)), sender.push(chunk(2))]);
  assert.equal(at.length, 2, "the run left as one frame");
  assert.ok(at[1] - at[0] >= 15, `the second send came ${at[1] - at[0]} ms after the first`);
});
