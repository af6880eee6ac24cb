/**
 * @module Tenant isolation of the engine's prefix cache. vLLM shares cached
 * KV blocks only between requests with the same `cache_salt` (research
 * vllm.md §2), so the node salts every request with an HMAC-SHA256 of the
 * request's project and tenant under XEROTIER_AGENT_VLLM_SALT_SECRET: one
 * tenant of one project always gets the same salt, on every node with the
 * same secret (its cache stays warm), two tenants never share one, nor do
 * two projects that both name a tenant `acme` (nodes of several projects
 * may share an LMCache store and a secret), and a client cannot pick a salt
 * to probe another tenant's cache because any `cache_salt` it sends is
 * replaced.
 */
import { createHmac } from "node:crypto";
import { bufferView } from "../core/buffer-view.ts";
import type { Config } from "../core/config/schema.ts";
import { DEFAULT_SALT_SECRET } from "../core/config/schema.ts";
import { XimError } from "../core/errors.ts";
import type { Secret } from "../core/secret.ts";
import { type JsonObjectScan, JsonScanError, scanJsonObject } from "../protocol/json-object-scan.ts";
import type { Dispatch } from "../protocol/messages.ts";

/** Whose cache a request uses: the project and tenant of its API key, as the router's dispatch says. */
export type SaltScope = Pick<Dispatch, "project" | "tenant">;

/**
 * The salt of one tenant of one project: lowercase hex
 * HMAC-SHA256(secret, JSON ["project","tenant"]), 64 characters. JSON makes
 * the pair unambiguous whatever characters either holds.
 */
export function cacheSalt(scope: SaltScope, secret: Secret): string {
  if (scope.tenant.length === 0 || scope.project.length === 0) {
    throw new XimError("XIM_TENANT_MISSING", "a request reached the node without a project or tenant", {
      hint: "The router must send the project and tenant of the API key with every request.",
    });
  }
  const input = JSON.stringify([scope.project, scope.tenant]);
  let salts = known.get(secret);
  const hit = salts?.get(input);
  if (hit) return hit;
  const salt = createHmac("sha256", secret.reveal()).update(input, "utf8").digest("hex");
  if (!salts) {
    salts = new Map();
    known.set(secret, salts);
  }
  if (salts.size >= KNOWN_SALTS_MAX) salts.clear();
  salts.set(input, salt);
  return salt;
}

/** Salts computed so far, per secret: an HMAC per request was a visible part of the relay's CPU. */
const known = new WeakMap<Secret, Map<string, string>>();
const KNOWN_SALTS_MAX = 10_000;

/**
 * The body to send to the engine for a client's OpenAI request body (JSON
 * bytes): the tenant's `cache_salt` written into the object as its last
 * field, returned as parts to send one after the other, without parsing
 * the body into objects and strings (a 256 KiB prompt made three large
 * strings per request; bench/README.md, "Fifth session"). A `cache_salt`
 * the client sent is cut out, so no parser can read it, whichever of two
 * duplicate fields it keeps. Throws XIM_BAD_REQUEST_BODY when the bytes are
 * not one JSON object.
 */
export function saltedEngineBody(clientBody: Uint8Array, scope: SaltScope, secret: Secret): Buffer[] {
  let scan: JsonObjectScan;
  try {
    scan = scanJsonObject(clientBody);
  } catch (err) {
    if (!(err instanceof JsonScanError)) throw err;
    throw new XimError(
      "XIM_BAD_REQUEST_BODY",
      `the request body must be a JSON object (an OpenAI chat or completions request): ${err.message}`,
    );
  }
  const bytes = bufferView(clientBody);
  const kept = scan.members.filter((m) => m.key !== "cache_salt");
  const salt = `"cache_salt":"${cacheSalt(scope, secret)}"}`;
  if (kept.length === scan.members.length) {
    // The usual case: the client's bytes up to the closing brace, untouched and not copied, then the salt.
    return [bytes.subarray(0, scan.close), Buffer.from(kept.length > 0 ? `,${salt}` : salt)];
  }
  const parts: Buffer[] = [Buffer.from("{")];
  for (const m of kept) parts.push(bytes.subarray(m.start, m.end), Buffer.from(","));
  parts.push(Buffer.from(salt));
  return parts;
}

/** Whether the node runs with the built-in salt secret (allowed for one tenant, warned about at start-up). */
export function isDefaultSaltSecret(config: Pick<Config, "vllmSaltSecret">): boolean {
  return config.vllmSaltSecret.reveal() === DEFAULT_SALT_SECRET;
}

/** The start-up warning for the built-in secret; the node logs it once. */
export const DEFAULT_SALT_SECRET_WARNING =
  "XEROTIER_AGENT_VLLM_SALT_SECRET is the built-in default: tenants' cache salts are predictable to anyone who knows it. Set a unique secret on every multi-tenant node.";
