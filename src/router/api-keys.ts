/**
 * @module API keys of the router's OpenAI front: each maps to one project
 * (requests reach only that project's nodes) and one tenant (the node
 * salts the engine's prefix cache per tenant). Keys look like
 * `xak_<32 base64url>`; the router stores only their SHA-256 (table
 * `api_keys` in router.db, created here on first use) and an id
 * (`ak_` + 12 hex of the hash) to list and revoke them by.
 */
import { randomBytes, timingSafeEqual } from "node:crypto";
import { sha256Hex } from "../core/sha256.ts";
import type { RouterStore } from "./store.ts";

export const API_KEY_PREFIX = "xak_";
const PROJECT_RE = /^[a-z0-9][a-z0-9-]{0,39}$/;
const TENANT_RE = /^[A-Za-z0-9][A-Za-z0-9._:@-]{0,127}$/;

export interface ApiKeyRow {
  id: string;
  project: string;
  tenant: string;
  createdAt: number;
  revokedAt: number | null;
}

export interface ApiKeyIdentity {
  id: string;
  project: string;
  tenant: string;
}

const TABLE = `CREATE TABLE IF NOT EXISTS api_keys (
  id TEXT PRIMARY KEY, hash TEXT NOT NULL UNIQUE, project TEXT NOT NULL, tenant TEXT NOT NULL,
  created_at INTEGER NOT NULL, revoked_at INTEGER)`;

const prepared = new WeakSet<RouterStore>();

function ensureTable(store: RouterStore): void {
  if (prepared.has(store)) return;
  store.db.exec(TABLE);
  prepared.add(store);
}

const byHash = new WeakMap<RouterStore, ReturnType<RouterStore["db"]["prepare"]>>();

/** The lookup runs on every request: prepare it once per store. */
function selectByHash(store: RouterStore) {
  let stmt = byHash.get(store);
  if (!stmt) {
    stmt = store.db.prepare("SELECT * FROM api_keys WHERE hash = ?");
    byHash.set(store, stmt);
  }
  return stmt;
}

function hashOf(key: string): string {
  return sha256Hex(key);
}

function toRow(r: Record<string, unknown>): ApiKeyRow {
  return {
    id: String(r.id),
    project: String(r.project),
    tenant: String(r.tenant),
    createdAt: Number(r.created_at),
    revokedAt: r.revoked_at === null || r.revoked_at === undefined ? null : Number(r.revoked_at),
  };
}

export function validateProject(project: string): string | undefined {
  return PROJECT_RE.test(project)
    ? undefined
    : `project '${project}' is not valid: use lowercase letters, digits and '-', up to 40 characters`;
}

export function validateTenant(tenant: string): string | undefined {
  return TENANT_RE.test(tenant)
    ? undefined
    : `tenant '${tenant}' is not valid: use letters, digits and . _ : @ -, up to 128 characters, starting with a letter or digit`;
}

/** Mint a key; the key itself is returned once and never stored. */
export function createApiKey(
  store: RouterStore,
  input: { project: string; tenant: string; now?: number },
): { key: string; row: ApiKeyRow } {
  ensureTable(store);
  const key = `${API_KEY_PREFIX}${randomBytes(24).toString("base64url")}`;
  const hash = hashOf(key);
  const row: ApiKeyRow = {
    id: `ak_${hash.slice(0, 12)}`,
    project: input.project,
    tenant: input.tenant,
    createdAt: input.now ?? Date.now(),
    revokedAt: null,
  };
  store.db
    .prepare("INSERT INTO api_keys (id, hash, project, tenant, created_at) VALUES (?, ?, ?, ?, ?)")
    .run(row.id, hash, row.project, row.tenant, row.createdAt);
  return { key, row };
}

/**
 * How long a key found valid is trusted without asking the store again:
 * the lookup runs on every request (an SQLite read each), and `xim router
 * api-key revoke` runs in another process, so a revocation takes effect
 * within this long. Unknown keys are never cached (no memory for guesses).
 */
export const API_KEY_CACHE_MS = 1000;
const API_KEY_CACHE_MAX = 10_000;

const recent = new WeakMap<RouterStore, Map<string, { identity: ApiKeyIdentity; at: number }>>();

/** The project and tenant of a presented key, or undefined when it is unknown or revoked. */
export function lookupApiKey(store: RouterStore, key: string, now = Date.now()): ApiKeyIdentity | undefined {
  let cache = recent.get(store);
  const hit = cache?.get(key);
  if (hit && now - hit.at < API_KEY_CACHE_MS) return hit.identity;
  const identity = readApiKey(store, key);
  if (!cache) {
    cache = new Map();
    recent.set(store, cache);
  }
  if (!identity) cache.delete(key);
  else {
    if (cache.size >= API_KEY_CACHE_MAX) cache.clear();
    cache.set(key, { identity, at: now });
  }
  return identity;
}

function readApiKey(store: RouterStore, key: string): ApiKeyIdentity | undefined {
  if (!key.startsWith(API_KEY_PREFIX) || key.length > 200) return undefined;
  ensureTable(store);
  const hash = hashOf(key);
  const r = selectByHash(store).get(hash) as Record<string, unknown> | undefined;
  if (!r || r.revoked_at !== null) return undefined;
  // The lookup is by hash already; compare again in constant time for good measure.
  if (!timingSafeEqual(Buffer.from(String(r.hash)), Buffer.from(hash))) return undefined;
  return { id: String(r.id), project: String(r.project), tenant: String(r.tenant) };
}

export function listApiKeys(store: RouterStore): ApiKeyRow[] {
  ensureTable(store);
  return (
    store.db.prepare("SELECT * FROM api_keys ORDER BY created_at").all() as Record<string, unknown>[]
  ).map(toRow);
}

export function revokeApiKey(store: RouterStore, id: string, now = Date.now()): ApiKeyRow | undefined {
  ensureTable(store);
  recent.delete(store);
  const r = store.db
    .prepare("UPDATE api_keys SET revoked_at = COALESCE(revoked_at, ?) WHERE id = ? RETURNING *")
    .get(now, id) as Record<string, unknown> | undefined;
  return r ? toRow(r) : undefined;
}
