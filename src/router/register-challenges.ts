/**
 * @module The challenges that make a node's `register` proof fresh. A node
 * first sends `register` without a challenge; the router answers
 * `register_challenge` with a random value bound to that connection (its
 * routing id), and the node registers again with the value inside its
 * HMAC proof. A challenge is used once and expires after CHALLENGE_TTL_MS,
 * so a register seen on the wire (plain ZeroMQ under `--insecure-zmq`)
 * cannot be replayed to take over the node's lease. At most
 * MAX_PENDING_CHALLENGES wait at once (the oldest are dropped): whoever
 * floods the router with requests only costs a node one more round trip.
 */
import { randomBytes, timingSafeEqual } from "node:crypto";

export const CHALLENGE_TTL_MS = 30_000;
export const MAX_PENDING_CHALLENGES = 4096;

interface Pending {
  challenge: string;
  expiresAt: number;
}

export class RegisterChallenges {
  readonly #now: () => number;
  /** By routing id, oldest first (all share one TTL, so also by expiry). */
  readonly #pending = new Map<string, Pending>();

  constructor(now: () => number = Date.now) {
    this.#now = now;
  }

  get size(): number {
    return this.#pending.size;
  }

  /** A new challenge for the connection `routingId` (replacing one it was given before). */
  issue(routingId: string): { challenge: string; expiresInMs: number } {
    const now = this.#now();
    for (const [id, p] of this.#pending) {
      if (p.expiresAt > now && this.#pending.size < MAX_PENDING_CHALLENGES) break;
      this.#pending.delete(id);
    }
    const challenge = randomBytes(16).toString("hex");
    this.#pending.delete(routingId);
    this.#pending.set(routingId, { challenge, expiresAt: now + CHALLENGE_TTL_MS });
    return { challenge, expiresInMs: CHALLENGE_TTL_MS };
  }

  /** Use up the challenge of `routingId`: true when `challenge` is the one issued to it and still valid. */
  take(routingId: string, challenge: string): boolean {
    const p = this.#pending.get(routingId);
    if (!p) return false;
    this.#pending.delete(routingId);
    const a = Buffer.from(p.challenge);
    const b = Buffer.from(challenge);
    return p.expiresAt > this.#now() && a.length === b.length && timingSafeEqual(a, b);
  }
}
