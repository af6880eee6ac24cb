/**
 * @module Minting, listing and revoking join keys. A key is shown once, at
 * creation; the router keeps only the SHA-256 of its secret, its uses,
 * expiry, labels and revocation.
 */
import { randomBytes } from "node:crypto";
import { UsageError, XimError } from "../core/errors.ts";
import { isValidTime } from "../core/time-text.ts";
import { encodeJoinKey, joinKeyId, joinKeySecretHash, PROJECT_PATTERN } from "../protocol/join-key.ts";
import type { RouterIdentity } from "./identity.ts";
import type { JoinKeyRow, RouterStore } from "./store.ts";

export const ENROLL_URL_META = "enroll_url";

/**
 * A key's lifetime: at least a minute, so it outlives the copy onto the
 * node; at most a year, so a forgotten key stops being a standing
 * credential ('never' stays an explicit choice). Bounding it here also
 * keeps every stored expiry inside what a Date can hold.
 */
export const JOIN_KEY_TTL_MS = { min: 60_000, max: 365 * 86_400_000 } as const;
/** Enrollments one key allows: a key for more nodes than this is a fleet-wide secret; mint several. */
export const JOIN_KEY_USES_MAX = 10_000;

export interface CreateJoinKeyOptions {
  project: string;
  uses: number;
  /** Time to live in ms; null = never expires. */
  ttlMs: number | null;
  labels: Record<string, string>;
  /** The enrollment address put in the key; defaults to the one the last `serve` listened on. */
  url?: string;
  now?: number;
}

export interface CreatedJoinKey {
  key: string;
  row: JoinKeyRow;
  url: string;
}

export function createJoinKey(
  store: RouterStore,
  identity: RouterIdentity,
  options: CreateJoinKeyOptions,
): CreatedJoinKey {
  if (!PROJECT_PATTERN.test(options.project)) {
    throw new UsageError(
      `project '${options.project}' is not a project name`,
      "Use lowercase letters, digits and '-', starting with a letter or digit, at most 40 characters.",
    );
  }
  checkUses(options.uses);
  if (options.ttlMs !== null) checkTtl(options.ttlMs);
  const url = options.url ?? store.getMeta(ENROLL_URL_META);
  if (!url) {
    throw new XimError("XIM_ROUTER_NO_URL", "the router's enrollment address is not known yet", {
      hint: "Start 'xim router serve' once (it records its address), or pass --url https://HOST:PORT.",
    });
  }
  if (!/^https?:\/\/[^\s/]+$/.test(url.replace(/\/$/, ""))) {
    throw new UsageError(`--url '${url}' is not an enrollment address`, "Use https://HOST:PORT.");
  }
  const secret = randomBytes(16);
  const hash = joinKeySecretHash(secret);
  const now = options.now ?? Date.now();
  const row: JoinKeyRow = {
    id: joinKeyId(hash),
    hash,
    project: options.project,
    usesAllowed: options.uses,
    uses: 0,
    expiresAt: options.ttlMs === null ? null : now + options.ttlMs,
    labels: options.labels,
    createdAt: now,
    revokedAt: null,
  };
  store.insertJoinKey(row);
  const key = encodeJoinKey({
    project: options.project,
    secret,
    tlsPin: identity.tlsPin,
    curvePin: identity.curvePin,
    url: url.replace(/\/$/, ""),
  });
  return { key, row, url };
}

function checkUses(uses: number): void {
  if (!Number.isInteger(uses) || uses < 1 || uses > JOIN_KEY_USES_MAX)
    throw new UsageError(
      `--uses ${uses} is out of range: a join key allows 1 to ${JOIN_KEY_USES_MAX} enrollments`,
      "Mint several keys for a larger fleet.",
    );
}

function checkTtl(ttlMs: number): void {
  if (Number.isFinite(ttlMs) && ttlMs >= JOIN_KEY_TTL_MS.min && ttlMs <= JOIN_KEY_TTL_MS.max) return;
  const shown = ttlMs >= 86_400_000 ? `${+(ttlMs / 86_400_000).toPrecision(6)} days` : `${ttlMs / 1000} s`;
  throw new UsageError(
    `--ttl ${shown} is out of range: a join key lives 1 minute to 365 days, or 'never'`,
    "Use e.g. --ttl 1h or --ttl 30d.",
  );
}

/** "invalid": the stored expiry is beyond what a Date holds (older state); such a key enrolls nothing. */
export type JoinKeyStatus = "active" | "expired" | "used" | "revoked" | "invalid";

export function joinKeyStatus(row: JoinKeyRow, now = Date.now()): JoinKeyStatus {
  if (row.revokedAt !== null) return "revoked";
  if (row.expiresAt !== null && !isValidTime(row.expiresAt)) return "invalid";
  if (row.expiresAt !== null && now >= row.expiresAt) return "expired";
  if (row.uses >= row.usesAllowed) return "used";
  return "active";
}

/** "90s", "15m", "1h", "7d", "1h30m" -> ms; "0"/"never" -> null. */
export function parseDuration(text: string): number | null {
  const t = text.trim().toLowerCase();
  if (t === "0" || t === "never" || t === "none") return null;
  const re = /(\d+(?:\.\d+)?)(ms|s|m|h|d)/g;
  let total = 0;
  let consumed = 0;
  for (const m of t.matchAll(re)) {
    const n = Number(m[1]);
    total += n * { ms: 1, s: 1000, m: 60_000, h: 3_600_000, d: 86_400_000 }[m[2] as "ms"];
    consumed += m[0].length;
  }
  if (consumed !== t.length || consumed === 0 || total <= 0) {
    throw new Error(`'${text}' is not a duration: use e.g. 30m, 1h, 7d, 1h30m, or 'never'`);
  }
  return Math.round(total);
}

/** "k=v,k2=v2" (repeatable) -> labels. */
export function parseLabels(text: string, previous: Record<string, string> = {}): Record<string, string> {
  const out = { ...previous };
  for (const part of text
    .split(",")
    .map((s) => s.trim())
    .filter(Boolean)) {
    const eq = part.indexOf("=");
    if (eq <= 0) throw new Error(`label '${part}' is not KEY=VALUE`);
    const k = part.slice(0, eq).trim();
    if (!/^[A-Za-z0-9_./-]{1,63}$/.test(k))
      throw new Error(`label key '${k}' may use letters, digits, '_', '.', '/', '-' (at most 63)`);
    out[k] = part.slice(eq + 1).trim();
  }
  return out;
}
