/**
 * @module CURVE keys: Z85 text <-> raw bytes, key pair generation (libzmq),
 * and the proof of possession a node puts in `register`. ZeroMQ does not
 * tell the application which CURVE key sent a message, so the node proves
 * it holds the enrolled key with an HMAC keyed by the X25519 shared secret
 * of its key pair and the router's (docs/protocol.md "Keys and
 * authentication"); both sides can compute it, nobody else can.
 */
import { createHmac, createPrivateKey, createPublicKey, diffieHellman, timingSafeEqual } from "node:crypto";
import * as zmq from "zeromq";
import { sha256Hex } from "../core/sha256.ts";

const ALPHABET = "0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ.-:+=^!/*?&<>()[]{}@%$#";
const DECODE = new Map([...ALPHABET].map((c, i) => [c, i]));

export interface CurveKeyPair {
  /** Z85, 40 characters. */
  publicKey: string;
  /** Z85, 40 characters. Never logged, never sent. */
  secretKey: string;
}

export function generateCurveKeyPair(): CurveKeyPair {
  const pair = zmq.curveKeyPair();
  return { publicKey: pair.publicKey, secretKey: pair.secretKey };
}

export function z85Encode(data: Uint8Array): string {
  if (data.length % 4 !== 0) throw new Error("z85: length must be a multiple of 4");
  let out = "";
  for (let i = 0; i < data.length; i += 4) {
    let value = ((data[i] << 24) >>> 0) + (data[i + 1] << 16) + (data[i + 2] << 8) + data[i + 3];
    const chunk: string[] = [];
    for (let j = 0; j < 5; j++) {
      chunk.unshift(ALPHABET[value % 85]);
      value = Math.floor(value / 85);
    }
    out += chunk.join("");
  }
  return out;
}

/** Raw bytes of a Z85 string, or null when it is not valid Z85. */
export function z85Decode(text: string): Uint8Array | null {
  if (text.length % 5 !== 0) return null;
  const out = new Uint8Array((text.length / 5) * 4);
  for (let i = 0, o = 0; i < text.length; i += 5, o += 4) {
    let value = 0;
    for (let j = 0; j < 5; j++) {
      const digit = DECODE.get(text[i + j]);
      if (digit === undefined) return null;
      value = value * 85 + digit;
    }
    if (value > 0xffffffff) return null;
    out[o] = (value >>> 24) & 0xff;
    out[o + 1] = (value >>> 16) & 0xff;
    out[o + 2] = (value >>> 8) & 0xff;
    out[o + 3] = value & 0xff;
  }
  return out;
}

function raw32(z85: string, what: string): Buffer {
  const bytes = z85Decode(z85);
  if (bytes === null) throw new Error(`${what} is not Z85 text`);
  if (bytes?.length !== 32) throw new Error(`${what} is not a 40-character Z85 CURVE key`);
  return Buffer.from(bytes);
}

/** SHA-256 (hex) of the 32 raw bytes of a CURVE public key: the pin a join key carries. */
export function curveKeyFingerprint(publicKeyZ85: string): string {
  return sha256Hex(raw32(publicKeyZ85, "public key"));
}

/** X25519(own secret, peer public): the same 32 bytes on both sides. */
export function curveSharedSecret(own: CurveKeyPair, peerPublicKey: string): Buffer {
  const d = raw32(own.secretKey, "secret key").toString("base64url");
  const x = raw32(own.publicKey, "public key").toString("base64url");
  const privateKey = createPrivateKey({ key: { kty: "OKP", crv: "X25519", d, x }, format: "jwk" });
  const publicKey = createPublicKey({
    key: { kty: "OKP", crv: "X25519", x: raw32(peerPublicKey, "peer key").toString("base64url") },
    format: "jwk",
  });
  return diffieHellman({ privateKey, publicKey });
}

export interface RegisterProofInput {
  nodeId: string;
  nonce: string;
  /** The router's challenge (single use, see RegisterChallengeSchema); "" when asking for one. */
  challenge: string | null;
  controlRoutingId: string;
  streamingRoutingId: string | null;
}

export function registerProof(shared: Uint8Array, input: RegisterProofInput): string {
  const text = [
    "xim-register",
    input.nodeId,
    input.nonce,
    input.challenge ?? "",
    input.controlRoutingId,
    input.streamingRoutingId ?? "",
  ].join("\n");
  return createHmac("sha256", shared).update(text).digest("hex");
}

export function verifyRegisterProof(shared: Uint8Array, input: RegisterProofInput, proof: string): boolean {
  const want = Buffer.from(registerProof(shared, input), "hex");
  const got = Buffer.from(proof, "hex");
  return got.length === want.length && timingSafeEqual(got, want);
}
