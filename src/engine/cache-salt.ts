/**
 * @module Tenant isolation of the engine's prefix cache. vLLM shares cached
 * KV blocks only between requests with the same `cache_salt` (research
 * vllm.md §2), so the node salts every request with an HMAC-SHA256 of the
 * tenant under XEROTIER_AGENT_VLLM_SALT_SECRET: one tenant always gets the
 * same salt (its cache stays warm), two tenants never share one, and a
 * client cannot pick a salt to probe another tenant's cache because any
 * `cache_salt` it sends is replaced.
 */
import { createHmac } from "node:crypto";
import type { Config } from "../core/config/schema.ts";
import { DEFAULT_SALT_SECRET } from "../core/config/schema.ts";
import { XimError } from "../core/errors.ts";
import type { Secret } from "../core/secret.ts";

/** The salt of one tenant: lowercase hex HMAC-SHA256(secret, tenant), 64 characters. */
export function cacheSalt(tenant: string, secret: Secret): string {
  if (tenant.length === 0) {
    throw new XimError("XIM_TENANT_MISSING", "a request reached the node without a tenant", {
      hint: "The router must send the tenant of the API key with every request.",
    });
  }
  let salts = known.get(secret);
  const hit = salts?.get(tenant);
  if (hit) return hit;
  const salt = createHmac("sha256", secret.reveal()).update(tenant, "utf8").digest("hex");
  if (!salts) {
    salts = new Map();
    known.set(secret, salts);
  }
  if (salts.size >= KNOWN_SALTS_MAX) salts.clear();
  salts.set(tenant, salt);
  return salt;
}

/** Salts computed so far, per secret: an HMAC per request was a visible part of the relay's CPU. */
const known = new WeakMap<Secret, Map<string, string>>();
const KNOWN_SALTS_MAX = 10_000;

/**
 * The body to send to the engine for a client's OpenAI request body: a
 * shallow copy with the client's `cache_salt` (if any) dropped and ours set.
 * The client's object is not modified.
 */
export function saltedEngineBody(
  clientBody: unknown,
  tenant: string,
  secret: Secret,
): Record<string, unknown> {
  if (clientBody === null || typeof clientBody !== "object" || Array.isArray(clientBody)) {
    throw new XimError(
      "XIM_BAD_REQUEST_BODY",
      "the request body must be a JSON object (an OpenAI chat or completions request)",
    );
  }
  const { cache_salt: _dropped, ...rest } = clientBody as Record<string, unknown>;
  return { ...rest, cache_salt: cacheSalt(tenant, secret) };
}

/** Whether the node runs with the built-in salt secret (allowed for one tenant, warned about at start-up). */
export function isDefaultSaltSecret(config: Pick<Config, "vllmSaltSecret">): boolean {
  return config.vllmSaltSecret.reveal() === DEFAULT_SALT_SECRET;
}

/** The start-up warning for the built-in secret; the node logs it once. */
export const DEFAULT_SALT_SECRET_WARNING =
  "XEROTIER_AGENT_VLLM_SALT_SECRET is the built-in default: tenants' cache salts are predictable to anyone who knows it. Set a unique secret on every multi-tenant node.";
