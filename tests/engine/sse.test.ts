import assert from "node:assert/strict";
import { describe, test } from "node:test";
import fc from "fast-check";
import { isDone, SseParser, sseEvent } from "../../src/engine/sse.ts";

describe("SSE parsing", () => {
  test("payloads come back byte for byte however the bytes are split", () => {
    fc.assert(
      fc.property(
        fc.array(
          fc.string({ minLength: 1 }).filter((s) => !s.includes("\n") && !s.includes("\r")),
          { maxLength: 20 },
        ),
        fc.array(fc.nat(), { maxLength: 10 }),
        (payloads, cuts) => {
          const wire = Buffer.concat([...payloads.map((p) => sseEvent(p)), sseEvent("[DONE]")]);
          const points = [...new Set(cuts.map((c) => c % (wire.length + 1)))].sort((a, b) => a - b);
          const parser = new SseParser();
          const out: Buffer[] = [];
          let from = 0;
          for (const p of [...points, wire.length]) {
            out.push(...parser.push(wire.subarray(from, p)));
            from = p;
          }
          assert.deepEqual(
            out.map((b) => b.toString("utf8")),
            [...payloads, "[DONE]"],
          );
          assert.ok(isDone(out.at(-1) as Buffer));
          assert.equal(parser.pendingBytes, 0);
        },
      ),
    );
  });

  test("comments are skipped, CRLF events and multi-line data are understood", () => {
    const parser = new SseParser();
    const out = parser.push(Buffer.from(': keep-alive\n\ndata: {"a":1}\r\n\r\ndata: x\ndata: y\n\n'));
    assert.deepEqual(out.map(String), ['{"a":1}', "x\ny"]);
  });
});
