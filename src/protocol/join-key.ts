/**
 * @module The join key format, `xjk_<project>_<token>`, shared by the
 * router that mints keys and the node that spends them. The token carries
 * a random secret, the SHA-256 pins of the router's TLS certificate and
 * CURVE public key, and the enrollment URL, with a CRC-32 so a truncated
 * or mistyped key is caught before anything is sent. Parsing returns which
 * part is wrong instead of throwing.
 */
import { crc32 } from "node:zlib";
import { sha256Hex } from "../core/sha256.ts";

export const JOIN_KEY_PREFIX = "xjk";
export const JOIN_KEY_FORMAT = 1;
export const PROJECT_PATTERN = /^[a-z0-9][a-z0-9-]{0,39}$/;
const SECRET_BYTES = 16;
const PIN_BYTES = 32;

export interface JoinKeyParts {
  project: string;
  secret: Uint8Array;
  /** SHA-256 of the router's TLS certificate (DER), hex. */
  tlsPin: string;
  /** SHA-256 of the router's CURVE public key (32 raw bytes), hex. */
  curvePin: string;
  /** The router's enrollment address, https://host:port (http:// only for --insecure routers). */
  url: string;
}

export type JoinKeyPart = "prefix" | "project" | "token" | "checksum" | "format" | "url";

export type ParsedJoinKey =
  | { ok: true; key: JoinKeyParts }
  | { ok: false; part: JoinKeyPart; message: string };

export function encodeJoinKey(parts: JoinKeyParts): string {
  if (!PROJECT_PATTERN.test(parts.project)) throw new Error(`bad project name ${parts.project}`);
  const url = Buffer.from(parts.url, "utf8");
  const body = Buffer.concat([
    Buffer.from([JOIN_KEY_FORMAT]),
    Buffer.from(parts.secret),
    Buffer.from(parts.tlsPin, "hex"),
    Buffer.from(parts.curvePin, "hex"),
    Buffer.from([url.length >> 8, url.length & 0xff]),
    url,
  ]);
  const sum = Buffer.alloc(4);
  sum.writeUInt32BE(crc32(body));
  return `${JOIN_KEY_PREFIX}_${parts.project}_${Buffer.concat([body, sum]).toString("base64url")}`;
}

/** The token's bytes: checksum, format, secret, the two pins and the enrollment address. */
function decodeToken(project: string, token: string): ParsedJoinKey {
  const raw = Buffer.from(token, "base64url");
  const fixed = 1 + SECRET_BYTES + 2 * PIN_BYTES + 2;
  if (raw.length < fixed + 4) {
    return {
      ok: false,
      part: "token",
      message: `the token is too short (${raw.length} bytes): the key was truncated`,
    };
  }
  const body = raw.subarray(0, raw.length - 4);
  if (crc32(body) !== raw.readUInt32BE(raw.length - 4)) {
    return {
      ok: false,
      part: "checksum",
      message: "the token's checksum does not match: the key was truncated or mistyped",
    };
  }
  if (body[0] !== JOIN_KEY_FORMAT) {
    return {
      ok: false,
      part: "format",
      message: `token format ${body[0]} is not known to this xim (knows ${JOIN_KEY_FORMAT}): upgrade xim`,
    };
  }
  let at = 1;
  const secret = new Uint8Array(body.subarray(at, at + SECRET_BYTES));
  at += SECRET_BYTES;
  const tlsPin = body.subarray(at, at + PIN_BYTES).toString("hex");
  at += PIN_BYTES;
  const curvePin = body.subarray(at, at + PIN_BYTES).toString("hex");
  at += PIN_BYTES;
  const urlLength = body.readUInt16BE(at);
  at += 2;
  if (body.length !== at + urlLength) {
    return {
      ok: false,
      part: "url",
      message: "the enrollment address inside the token has the wrong length",
    };
  }
  const url = body.subarray(at).toString("utf8");
  if (!/^https?:\/\/[^\s/]+/.test(url)) {
    return {
      ok: false,
      part: "url",
      message: `the enrollment address inside the token is not a URL: '${url.slice(0, 80)}'`,
    };
  }
  return { ok: true, key: { project, secret, tlsPin, curvePin, url } };
}

export function parseJoinKey(text: string): ParsedJoinKey {
  const key = text.trim();
  if (!key.startsWith(`${JOIN_KEY_PREFIX}_`)) {
    return {
      ok: false,
      part: "prefix",
      message: `the key must start with 'xjk_' (it starts with '${key.slice(0, 4)}')`,
    };
  }
  const rest = key.slice(JOIN_KEY_PREFIX.length + 1);
  const sep = rest.indexOf("_");
  if (sep < 0)
    return {
      ok: false,
      part: "project",
      message: "no '_' after the project name: expected xjk_<project>_<token>",
    };
  const project = rest.slice(0, sep);
  const token = rest.slice(sep + 1);
  if (!PROJECT_PATTERN.test(project)) {
    return {
      ok: false,
      part: "project",
      message: `project '${project.slice(0, 40)}' is not a project name (lowercase letters, digits and '-', at most 40)`,
    };
  }
  if (!/^[A-Za-z0-9_-]+$/.test(token)) {
    return {
      ok: false,
      part: "token",
      message: "the token after the project has characters outside base64url",
    };
  }
  return decodeToken(project, token);
}

/** What the router stores for a key: the hash of its secret, never the secret. */
export function joinKeySecretHash(secret: Uint8Array): string {
  return sha256Hex(secret);
}

/** The public id of a key, for `join-key list` and `revoke`. */
export function joinKeyId(secretHash: string): string {
  return `jk_${secretHash.slice(0, 12)}`;
}
