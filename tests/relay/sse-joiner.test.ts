/**
 * The router re-joins SSE events that a node split at its credit
 * boundary: however a stream is cut into chunks, the client receives the
 * same bytes, and every write ends on an event boundary.
 */
import assert from "node:assert/strict";
import { test } from "node:test";
import fc from "fast-check";
import { SseJoiner } from "../../src/router/dispatch.ts";

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
