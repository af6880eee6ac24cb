/**
 * Fuzz of both ZeroMQ decoders beyond tests/protocol/codec.test.ts (which
 * covers random bytes, random maps with real type names and byte
 * mutations of valid frames): here, schema-aware inputs. Each field of a
 * valid message replaced by a value of another type or dropped, unknown
 * keys added (a receiver ignores them), every truncation of a valid
 * frame, and MessagePack headers that claim huge lengths. The decoders
 * never throw, a valid message stays valid with unknown keys, and a
 * message is never accepted in the wrong direction or with a field of
 * another type. (batch-decoders.test.ts covers frames of several messages.)
 */
import assert from "node:assert/strict";
import { describe, test } from "node:test";
import fc from "fast-check";
import { decodeNodeMessage, decodeRouterMessage, encodeMessage } from "../../src/protocol/codec.ts";
import type { NodeMessage, Outgoing } from "../../src/protocol/messages.ts";
import { PROTOCOL_VERSION } from "../../src/protocol/version.ts";
import { anyValue, packr, sides } from "./examples.ts";

const counts: Record<string, number> = {};
const note = (what: string, n: number) => {
  counts[what] = (counts[what] ?? 0) + n;
};

describe("fuzz: the ZeroMQ decoders with schema-aware inputs", () => {
  for (const side of sides) {
    test(`${side.name}: a field replaced by another type or dropped never throws, and is caught by the schema`, () => {
      let runs = 0;
      fc.assert(
        fc.property(
          fc.constantFrom(...side.messages),
          fc.nat(),
          fc.option(anyValue, { freq: 4 }),
          (message, which, value) => {
            runs++;
            const keys = Object.keys(message).filter((k) => k !== "type");
            const key = keys[which % keys.length];
            const copy: Record<string, unknown> = { v: PROTOCOL_VERSION, ...message };
            if (value === null) delete copy[key];
            else copy[key] = value;
            const r = side.one(packr.pack(copy));
            if (r.ok) {
              // Accepted: the field must have been optional or the value of a type the schema allows.
              const m = r.message as Record<string, unknown>;
              assert.equal(m.type, message.type);
              if (value !== null && typeof message[key] !== typeof value)
                assert.ok(
                  message[key] instanceof Uint8Array && value instanceof Uint8Array,
                  `${message.type}.${key} accepted ${typeof value} for ${typeof message[key]}`,
                );
            }
            assert.equal(side.other(packr.pack(copy)).ok, false, "never accepted in the wrong direction");
          },
        ),
        { numRuns: 3000 },
      );
      note("field replaced or dropped", runs);
    });

    test(`${side.name}: unknown keys are ignored, so a valid message stays valid`, () => {
      let runs = 0;
      fc.assert(
        fc.property(
          fc.constantFrom(...side.messages),
          fc.dictionary(
            fc
              .string({ minLength: 1, maxLength: 10 })
              .filter((k) => !/^(v|type|__proto__|constructor)$/.test(k)),
            anyValue,
            { maxKeys: 5 },
          ),
          (message, extra) => {
            runs++;
            const known = new Set(Object.keys(message));
            const added = Object.fromEntries(Object.entries(extra).filter(([k]) => !known.has(k)));
            const r = side.one(packr.pack({ ...added, v: PROTOCOL_VERSION, ...message }));
            assert.ok(
              r.ok,
              `${message.type} with ${JSON.stringify(Object.keys(added))}: ${r.ok ? "" : r.detail}`,
            );
          },
        ),
        { numRuns: 1000 },
      );
      note("unknown keys added", runs);
    });

    test(`${side.name}: every truncation of a valid frame is refused without throwing`, () => {
      let n = 0;
      for (const message of side.messages) {
        const frame = encodeMessage(message as Outgoing<NodeMessage>);
        for (let cut = 0; cut < frame.length; cut++) {
          n++;
          assert.equal(side.one(frame.subarray(0, cut)).ok, false, `${message.type} cut at ${cut}`);
        }
      }
      note("truncations", n);
    });
  }

  test("MessagePack headers claiming huge lengths are refused at once, without allocating them", () => {
    // str32, bin32, array32, map32, ext32 with a length of 2^32-1, and the 16-bit forms, with little after.
    const heads = [0xdb, 0xc6, 0xdd, 0xdf, 0xc9].flatMap((h) => [
      Buffer.from([h, 0xff, 0xff, 0xff, 0xff]),
      Buffer.from([h, 0x7f, 0xff, 0xff, 0xff, 0x01, 0x02]),
    ]);
    heads.push(
      Buffer.from([0xdc, 0xff, 0xff]),
      Buffer.from([0xde, 0xff, 0xff]),
      Buffer.from([0xda, 0xff, 0xff]),
    );
    // A map that opens fine, then a value claiming 4 GiB.
    heads.push(
      Buffer.concat([
        Buffer.from([0x82, 0xa1, 0x76, 0x01, 0xa4]),
        Buffer.from("type"),
        Buffer.from([0xc6, 0xff, 0xff, 0xff, 0xff]),
      ]),
    );
    const before = process.memoryUsage().arrayBuffers;
    let grown = 0;
    for (const frame of heads)
      for (const decode of [decodeNodeMessage, decodeRouterMessage]) {
        assert.equal(decode(frame).ok, false);
        grown = Math.max(grown, process.memoryUsage().arrayBuffers - before);
      }
    // A decoder that believed a header would allocate up to 4 GiB (or die trying); 64 MiB is room for noise.
    assert.ok(grown < 64 * 2 ** 20, `buffers grew by ${grown} bytes while refusing the headers`);
    note("huge length headers", heads.length * 2);
  });

  test("every generator above ran inputs (a fuzz that tried nothing proves nothing)", (t) => {
    for (const what of [
      "field replaced or dropped",
      "unknown keys added",
      "truncations",
      "huge length headers",
    ])
      assert.ok((counts[what] ?? 0) > 0, `${what}: no inputs were tried`);
    const total = Object.values(counts).reduce((a, b) => a + b, 0);
    for (const [k, v] of Object.entries(counts)) t.diagnostic(`${k}: ${v}`);
    t.diagnostic(`ZeroMQ decoders: ${total} inputs, none threw`);
  });
});
