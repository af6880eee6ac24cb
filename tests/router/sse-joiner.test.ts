/**
 * The router re-joins SSE events that a node split at its credit
 * boundary: however a stream is cut into chunks, the client receives the
 * same bytes, and every write ends on an event boundary.
 */
import assert from "node:assert/strict";
import { test } from "node:test";
import fc from "fast-check";
import { SseJoiner } from "../../src/router/sse-joiner.ts";

const event = fc.string({ minLength: 0, maxLength: 40 }).map((s) => `data: ${s.replaceAll("\n", " ")}\n\n`);

test("any split of an SSE stream comes out whole, one event boundary per write", () => {
  fc.assert(
    fc.property(fc.array(event, { minLength: 1, maxLength: 30 }), fc.array(fc.nat(200)), (events, cuts) => {
      const stream = Buffer.from(events.join(""));
      const points = [...new Set(cuts.map((c) => c % (stream.length + 1)))].sort((a, b) => a - b);
      const joiner = new SseJoiner();
      const out: Buffer[] = [];
      let from = 0;
      for (const p of [...points, stream.length]) {
        const written = joiner.push(stream.subarray(from, p));
        if (written.length > 0) assert.equal(written.subarray(-2).toString(), "\n\n");
        out.push(written);
        from = p;
      }
      assert.equal(joiner.rest(), undefined);
      assert.deepEqual(Buffer.concat(out), stream);
    }),
    { numRuns: 300 },
  );
});

test("a single byte after a boundary is held, not lost", () => {
  const j = new SseJoiner();
  assert.equal(j.push(Buffer.from("data: a\n\n")).toString(), "data: a\n\n");
  assert.equal(j.push(Buffer.from("d")).length, 0);
  assert.equal(j.rest()?.toString(), "d");
  assert.equal(j.push(Buffer.from("ata: b\n\n")).toString(), "data: b\n\n");
});

test("an event end split across two chunks ('\\n' | '\\n') completes the event", () => {
  const j = new SseJoiner();
  assert.equal(j.push(Buffer.from("data: a\n")).length, 0);
  assert.equal(j.push(Buffer.from("\ndata: b")).toString(), "data: a\n\n");
  assert.equal(j.rest()?.toString(), "data: b");
});

test("an unfinished event may grow to the limit and no further; the held bytes are dropped", () => {
  const j = new SseJoiner(1024);
  for (let i = 0; i < 8; i++) assert.equal(j.push(Buffer.alloc(128, "a")).length, 0);
  assert.equal(j.heldBytes, 1024);
  assert.throws(
    () => j.push(Buffer.from("a")),
    (err: Error & { code?: string }) => {
      assert.equal(err.code, "XIM_SSE_EVENT_TOO_LARGE");
      assert.match(
        err.message,
        /1025 bytes of one SSE event without its end.*largest accepted is 1024 bytes/,
      );
      return true;
    },
  );
  assert.equal(j.heldBytes, 0);
  // Complete events pass whatever their number; only what is held counts.
  const k = new SseJoiner(1024);
  for (let i = 0; i < 100; i++) assert.equal(k.push(Buffer.from(`data: ${"x".repeat(500)}\n\n`)).length, 508);
  assert.equal(k.heldBytes, 0);
});

test("held bytes are copies: the node's message buffer is not kept alive by a few bytes of it", () => {
  const j = new SseJoiner();
  const message = Buffer.alloc(64 * 1024, "z");
  message.write("data: x\n\ndata: y", 0);
  j.push(message.subarray(0, 16));
  const rest = j.rest();
  assert.equal(rest?.toString(), "data: y");
  assert.notEqual(rest?.buffer, message.buffer);
});
