import assert from "node:assert/strict";
import { describe, test } from "node:test";
import fc from "fast-check";
import { fieldValue, JsonScanError, MAX_DEPTH, scanJsonObject } from "../../src/protocol/json-object-scan.ts";

const WANTED = ["model", "stream", "cache_salt"];

/** What JSON.parse makes of the bytes: the wanted fields of an object, "not-object", or "invalid". */
function byJsonParse(bytes: Buffer): Map<string, unknown> | "not-object" | "invalid" {
  let v: unknown;
  try {
    v = JSON.parse(bytes.toString("utf8"));
  } catch {
    return "invalid";
  }
  if (v === null || typeof v !== "object" || Array.isArray(v)) return "not-object";
  const out = new Map<string, unknown>();
  for (const k of WANTED) if (Object.hasOwn(v, k)) out.set(k, (v as Record<string, unknown>)[k]);
  return out;
}

/** The wanted fields as the scan decodes them. */
function fieldsOf(bytes: Buffer): Map<string, unknown> {
  const scan = scanJsonObject(bytes);
  const out = new Map<string, unknown>();
  for (const k of WANTED) if (scan.members.some((m) => m.key === k)) out.set(k, fieldValue(bytes, scan, k));
  return out;
}

function byScan(bytes: Buffer): Map<string, unknown> | "refused" {
  try {
    return fieldsOf(bytes);
  } catch (err) {
    assert.ok(err instanceof JsonScanError, `only JsonScanError is thrown, got ${String(err)}`);
    return "refused";
  }
}

describe("scanJsonObject", () => {
  test("finds the wanted top-level fields and the closing brace, and ignores nested ones", () => {
    const text =
      ' { "messages": [{"model": "inner", "stream": 1}], "model" : "m-1", "stream": true, "n": -1.5e+3 } \n';
    const bytes = Buffer.from(text);
    const scan = scanJsonObject(bytes);
    assert.deepEqual(
      [...fieldsOf(bytes)],
      [
        ["model", "m-1"],
        ["stream", true],
      ],
    );
    assert.deepEqual(
      scan.members.map((m) => [m.key, text.slice(m.start, m.end)]),
      [
        ["messages", '"messages": [{"model": "inner", "stream": 1}]'],
        ["model", '"model" : "m-1"'],
        ["stream", '"stream": true'],
        ["n", '"n": -1.5e+3'],
      ],
    );
    assert.equal(scan.close, text.lastIndexOf("}"));
    assert.deepEqual(scanJsonObject(Buffer.from("{ }")).members, []);
  });

  test("the last of a repeated field wins, as in JSON.parse and Python's json", () => {
    const fields = fieldsOf(Buffer.from('{"model":"a","stream":false,"model":"b","stream":true}'));
    assert.equal(fields.get("model"), "b");
    assert.equal(fields.get("stream"), true);
  });

  test("a field name written with escapes is the same field (no second model smuggled past the router)", () => {
    assert.equal(fieldsOf(Buffer.from('{"model":"allowed","mod\\u0065l":"other"}')).get("model"), "other");
  });

  test("refusals name what is wrong and the byte", () => {
    const cases: Array<[string | Buffer, RegExp]> = [
      ["[1]", /expected a JSON object: found '\[' at byte 0/],
      ['{"a":1', /expected ',' or '}': the body ends at byte 6/],
      ['{"a":"x\ny"}', /control character.*byte 0x0a at byte 7/],
      ['{"a":"\\x"}', /invalid escape/],
      ['{"a":"\\u12G4"}', /four hex digits/],
      ['{"a":01}', /expected ',' or '}'/],
      ['{"a":tru}', /not a JSON value/],
      ['{"a":1} {}', /unexpected text after the JSON object/],
      ["{a:1}", /field name in double quotes/],
      [Buffer.from([0x7b, 0x22, 0x61, 0x22, 0x3a, 0x22, 0xff, 0x22, 0x7d]), /not valid UTF-8/],
      [
        `${'{"a":'.repeat(1)}${"[".repeat(MAX_DEPTH + 1)}${"]".repeat(MAX_DEPTH + 1)}}`,
        /nested deeper than 512/,
      ],
    ];
    for (const [text, want] of cases) {
      assert.throws(
        () => scanJsonObject(Buffer.isBuffer(text) ? text : Buffer.from(text)),
        want,
        String(text),
      );
    }
    const deepest = `{"a":${"[".repeat(MAX_DEPTH - 1)}${"]".repeat(MAX_DEPTH - 1)}}`;
    assert.doesNotThrow(() => scanJsonObject(Buffer.from(deepest)));
  });

  test("accepts exactly the objects JSON.parse accepts, with the same fields (property)", () => {
    const member = fc.constantFrom(...WANTED, "messages", "mod\\u0065l", "n");
    const objectText = fc
      .array(fc.tuple(member, fc.jsonValue({ maxDepth: 3 })), { maxLength: 6 })
      .map((members) => `{${members.map(([k, v]) => `"${k}":${JSON.stringify(v)}`).join(",")}}`);
    const damaged = fc
      .tuple(objectText, fc.nat(), fc.integer({ min: 0, max: 127 }), fc.boolean())
      .map(([s, at, byte, cut]) => {
        const i = at % (s.length + 1);
        return cut ? s.slice(0, i) : s.slice(0, i) + String.fromCharCode(byte) + s.slice(i + 1);
      });
    const text = fc.oneof(objectText, damaged, fc.json({ maxDepth: 3 }), fc.string({ maxLength: 40 }));
    fc.assert(
      fc.property(text, (t) => {
        const bytes = Buffer.from(t, "utf8");
        const want = byJsonParse(bytes);
        const got = byScan(bytes);
        if (want === "invalid" || want === "not-object") assert.equal(got, "refused", t);
        else assert.deepEqual(got, want, t);
      }),
      { numRuns: 5000 },
    );
  });

  test("a 256 KiB prompt is scanned without decoding it", () => {
    const prompt = "word ".repeat(52_429);
    const body = Buffer.from(
      JSON.stringify({ model: "m", messages: [{ role: "user", content: prompt }], stream: true }),
    );
    const scan = scanJsonObject(body);
    assert.equal(fieldValue(body, scan, "model"), "m");
    assert.equal(scan.close, body.length - 1);
  });
});
