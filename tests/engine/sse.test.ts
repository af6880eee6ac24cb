import assert from "node:assert/strict";
import { describe, test } from "node:test";
import fc from "fast-check";
import { isDone, SseBlockReader, SseParser, sseEvent, ssePayloads } from "../../src/engine/sse.ts";

/** Event payloads as OpenAI servers send them (one line each). */
const payloadsArb = fc.array(
  fc.string({ minLength: 1 }).filter((s) => !s.includes("\n") && !s.includes("\r")),
  { maxLength: 20 },
);

/** The SSE bytes of `payloads` and [DONE], cut at the given points (as socket reads would). */
function cutWire(payloads: string[], cuts: number[]): { wire: Buffer; pieces: Buffer[] } {
  const wire = Buffer.concat([...payloads.map((p) => sseEvent(p)), sseEvent("[DONE]")]);
  const points = [...new Set(cuts.map((c) => c % (wire.length + 1)))].sort((a, b) => a - b);
  const pieces: Buffer[] = [];
  let from = 0;
  for (const p of [...points, wire.length]) {
    pieces.push(wire.subarray(from, p));
    from = p;
  }
  return { wire, pieces };
}

describe("SSE parsing", () => {
  test("payloads come back byte for byte however the bytes are split", () => {
    fc.assert(
      fc.property(payloadsArb, fc.array(fc.nat(), { maxLength: 10 }), (payloads, cuts) => {
        const { pieces } = cutWire(payloads, cuts);
        const parser = new SseParser();
        const out: Buffer[] = [];
        for (const piece of pieces) out.push(...parser.push(piece));
        assert.deepEqual(
          out.map((b) => b.toString("utf8")),
          [...payloads, "[DONE]"],
        );
        assert.ok(isDone(out.at(-1) as Buffer));
        assert.equal(parser.pendingBytes, 0);
      }),
    );
  });

  test("comments are skipped, CRLF events and multi-line data are understood", () => {
    const parser = new SseParser();
    const out = parser.push(Buffer.from(': keep-alive\n\ndata: {"a":1}\r\n\r\ndata: x\ndata: y\n\n'));
    assert.deepEqual(out.map(String), ['{"a":1}', "x\ny"]);
  });

  test("blocks are whole events, byte for byte as written, however the bytes are split", () => {
    fc.assert(
      fc.property(payloadsArb, fc.array(fc.nat(), { maxLength: 10 }), (payloads, cuts) => {
        const { wire, pieces } = cutWire(payloads, cuts);
        const reader = new SseBlockReader();
        const blocks: Buffer[] = [];
        let done = false;
        for (const piece of pieces) {
          const block = reader.push(piece);
          if (!block) continue;
          assert.equal(done, false, "nothing after the [DONE] block");
          assert.ok(block.bytes.subarray(-2).equals(Buffer.from("\n\n")), "a block ends at an event end");
          blocks.push(block.bytes);
          done = block.done;
        }
        assert.ok(Buffer.concat(blocks).equals(wire), "the blocks are the wire bytes");
        assert.equal(done, true);
        assert.equal(reader.pendingBytes, 0);
      }),
    );
  });

  test("one read of many events is one block; [DONE] is seen only as the last event", () => {
    const reader = new SseBlockReader();
    const three = Buffer.from('data: {"a":1}\n\ndata: {"b":"[DONE]"}\n\ndata: {"c":3}\n\ndata: {"d"');
    const first = reader.push(three);
    assert.equal(first?.bytes.toString(), 'data: {"a":1}\n\ndata: {"b":"[DONE]"}\n\ndata: {"c":3}\n\n');
    assert.equal(first?.done, false);
    assert.equal(reader.pendingBytes, 'data: {"d"'.length);
    const last = reader.push(Buffer.from(":4}\n\ndata: [DONE]\n\n"));
    assert.equal(last?.bytes.toString(), 'data: {"d":4}\n\ndata: [DONE]\n\n');
    assert.equal(last?.done, true);
  });

  test("an engine that ends lines with CRLF gets its events re-encoded as data: <payload>\\n\\n", async () => {
    const reader = new SseBlockReader();
    const a = reader.push(
      Buffer.from('data: {"a":1}\n\n: keep-alive\r\n\r\ndata: x\r\ndata: y\r\n\r\ndata: [DO'),
    );
    assert.equal(a?.bytes.toString(), 'data: {"a":1}\n\ndata: x\ny\n\n');
    const b = reader.push(Buffer.from("NE]\r\n\r\n"));
    assert.equal(b?.bytes.toString(), "data: [DONE]\n\n");
    assert.equal(b?.done, true);
    async function* two() {
      yield { bytes: Buffer.from('data: {"a":1}\n\ndata: [DONE]\n\n'), done: true };
    }
    const payloads: string[] = [];
    for await (const p of ssePayloads(two())) payloads.push(p.toString());
    assert.deepEqual(payloads, ['{"a":1}', "[DONE]"]);
  });
});
