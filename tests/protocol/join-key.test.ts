import assert from "node:assert/strict";
import { randomBytes } from "node:crypto";
import { describe, test } from "node:test";
import fc from "fast-check";
import {
  encodeJoinKey,
  type JoinKeyParts,
  joinKeyId,
  joinKeySecretHash,
  parseJoinKey,
} from "../../src/protocol/join-key.ts";
import {
  curveKeyFingerprint,
  curveSharedSecret,
  generateCurveKeyPair,
  registerProof,
  verifyRegisterProof,
  z85Decode,
  z85Encode,
} from "../../src/transport/curve.ts";

const parts: JoinKeyParts = {
  project: "acme-prod",
  secret: new Uint8Array(randomBytes(16)),
  tlsPin: "11".repeat(32),
  curvePin: "22".repeat(32),
  url: "https://router.example:8443",
};

describe("join keys: xjk_<project>_<token>", () => {
  test("encode then parse gives the same parts", () => {
    const key = encodeJoinKey(parts);
    assert.match(key, /^xjk_acme-prod_[A-Za-z0-9_-]+$/);
    const parsed = parseJoinKey(key);
    assert.ok(parsed.ok);
    assert.deepEqual(
      { ...parsed.key, secret: [...parsed.key.secret] },
      { ...parts, secret: [...parts.secret] },
    );
  });

  const key = encodeJoinKey(parts);
  const cases: Array<[string, string, string]> = [
    ["wrong prefix", key.replace("xjk_", "xjq_"), "prefix"],
    ["no token separator", "xjk_acme", "project"],
    ["bad project", key.replace("acme-prod", "Acme!"), "project"],
    ["non-base64 token", `${key}$`, "token"],
    ["truncated", key.slice(0, 40), "token"],
    [
      "one character changed",
      key.slice(0, -3) + (key.at(-3) === "A" ? "B" : "A") + key.slice(-2),
      "checksum",
    ],
    ["dropped tail", key.slice(0, -2), "checksum"],
  ];
  for (const [name, text, part] of cases) {
    test(`a malformed key names the part: ${name}`, () => {
      const parsed = parseJoinKey(text);
      assert.equal(parsed.ok, false);
      assert.equal(!parsed.ok && parsed.part, part, !parsed.ok ? parsed.message : "");
    });
  }

  test("property: parsing any text never throws", () => {
    fc.assert(
      fc.property(fc.string({ maxLength: 300 }), (text) => {
        parseJoinKey(text);
        parseJoinKey(`xjk_p_${text}`);
      }),
      { numRuns: 2000 },
    );
  });

  test("the router stores a hash, and ids come from the hash", () => {
    const hash = joinKeySecretHash(parts.secret);
    assert.match(hash, /^[0-9a-f]{64}$/);
    assert.equal(joinKeyId(hash), `jk_${hash.slice(0, 12)}`);
  });
});

describe("CURVE keys and the register proof", () => {
  test("Z85 round trip matches libzmq's key encoding", () => {
    const pair = generateCurveKeyPair();
    const raw = z85Decode(pair.publicKey);
    assert.equal(raw?.length, 32);
    assert.equal(z85Encode(raw as Uint8Array), pair.publicKey);
    assert.equal(z85Decode("not z85~"), null);
    assert.equal(curveKeyFingerprint(pair.publicKey).length, 64);
  });

  test("both sides derive the same secret; another key cannot forge the proof", () => {
    const node = generateCurveKeyPair();
    const router = generateCurveKeyPair();
    const other = generateCurveKeyPair();
    const a = curveSharedSecret(node, router.publicKey);
    const b = curveSharedSecret(router, node.publicKey);
    assert.deepEqual(a, b);
    const input = {
      nodeId: "node_x",
      nonce: "n",
      challenge: "k",
      controlRoutingId: "c.1",
      streamingRoutingId: null,
    };
    const proof = registerProof(a, input);
    assert.ok(verifyRegisterProof(b, input, proof));
    assert.ok(
      !verifyRegisterProof(b, { ...input, controlRoutingId: "c.2" }, proof),
      "the proof binds the routing ids",
    );
    assert.ok(!verifyRegisterProof(b, { ...input, challenge: "j" }, proof), "the proof binds the challenge");
    const forged = registerProof(curveSharedSecret(other, router.publicKey), input);
    assert.ok(!verifyRegisterProof(b, input, forged));
  });
});
