/**
 * Fuzz of the batch decoders (decodeNodeMessages, decodeRouterMessages: a
 * frame holding several messages back to back): batches of valid messages
 * decode in order, garbage after them ends the frame, random bytes never
 * throw, and a frame of garbage costs a bounded number of results (a
 * peer's one frame must not become millions of objects).
 */
import assert from "node:assert/strict";
import { describe, test } from "node:test";
import fc from "fast-check";
import {
  type DecodeResult,
  decodeNodeMessages,
  decodeRouterMessages,
  encodeMessage,
} from "../../src/protocol/codec.ts";
import type { NodeMessage, Outgoing } from "../../src/protocol/messages.ts";
import { sides as singleSides } from "./examples.ts";

const sides = singleSides.map((s, i) => ({
  ...s,
  all: (i === 0 ? decodeNodeMessages : decodeRouterMessages) as (f: Uint8Array) => DecodeResult<unknown>[],
}));

const counts: Record<string, number> = {};
const note = (what: string, n: number) => {
  counts[what] = (counts[what] ?? 0) + n;
};

describe("fuzz: the batch decoders", () => {
  for (const side of sides) {
    test(`${side.name}: batches of valid messages decode in order; garbage after them ends the frame`, () => {
      let runs = 0;
      fc.assert(
        fc.property(
          fc.array(fc.constantFrom(...side.messages), { minLength: 1, maxLength: 8 }),
          fc.option(fc.uint8Array({ minLength: 1, maxLength: 64 })),
          (messages, tail) => {
            runs++;
            const frames = messages.map((m) => encodeMessage(m as Outgoing<NodeMessage>));
            const frame = Buffer.concat(tail ? [...frames, Buffer.from(tail)] : frames);
            const results = side.all(frame);
            for (let i = 0; i < messages.length; i++) {
              assert.ok(results[i]?.ok, `message ${i} of the batch`);
              assert.equal((results[i] as { message: { type: string } }).message.type, messages[i].type);
            }
            if (!tail) assert.equal(results.length, messages.length);
          },
        ),
        { numRuns: 1500 },
      );
      note("batches with garbage after them", runs);
    });

    test(`${side.name}: random bytes as a batch never throw`, () => {
      let runs = 0;
      fc.assert(
        fc.property(fc.uint8Array({ minLength: 1, maxLength: 512 }), (bytes) => {
          runs++;
          const results = side.all(bytes);
          assert.ok(results.length >= 1);
          for (const r of results) assert.equal(typeof r.ok, "boolean");
        }),
        { numRuns: 2000 },
      );
      note("random bytes as a batch", runs);
    });
  }

  test("a batch frame of many tiny non-messages yields a bounded number of results", () => {
    // 64 KiB of MessagePack nil: a frame a peer can send for free. A decoder that reports every
    // value on its own returns 65,536 results (a 16 MiB frame: 16.7 million, ~1.2 GiB and ~11 s of
    // a blocked event loop, measured); garbage must end the frame instead.
    const nils = Buffer.alloc(64 * 1024, 0xc0);
    // Maps that look like messages of an unknown type, back to back.
    const unknown = Buffer.concat(
      Array.from({ length: 5000 }, () => encodeMessage({ type: "nope" } as never)),
    );
    for (const frame of [nils, unknown])
      for (const decode of [decodeNodeMessages, decodeRouterMessages]) {
        const results = decode(frame);
        assert.ok(results.every((r) => !r.ok));
        assert.ok(results.length <= 16, `${results.length} results for one frame of garbage`);
      }
    note("garbage batch frames", 4);
  });

  test("every generator above ran inputs (a fuzz that tried nothing proves nothing)", (t) => {
    for (const what of ["batches with garbage after them", "random bytes as a batch", "garbage batch frames"])
      assert.ok((counts[what] ?? 0) > 0, `${what}: no inputs were tried`);
    const total = Object.values(counts).reduce((a, b) => a + b, 0);
    for (const [k, v] of Object.entries(counts)) t.diagnostic(`${k}: ${v}`);
    t.diagnostic(`batch decoders: ${total} inputs, none threw`);
  });
});
