/**
 * @module The node's lease loop: register, hold the lease (renew it every
 * interval, give it up when the router refuses it or stays silent for a
 * whole lease), and come back with jittered exponential backoff
 * (lease.ts) until the session stops or the router refuses this node for
 * good. The loop owns the order and the timing; the session (session.ts)
 * owns the sockets and the messages, and gives the loop what it needs
 * through a LeaseLoopSession.
 */
import { backoffDelay } from "../core/backoff.ts";
import type { XimError } from "../core/errors.ts";
import type { Logger } from "../core/log.ts";
import { leaseLostAfterMs, reconnectPolicy } from "./lease.ts";

export interface LeaseInfo {
  nodeId: string;
  leaseId: string;
  epoch: number;
  leaseDurationMs: number;
  renewalIntervalMs: number;
}

export type RegisterOutcome =
  | { kind: "ok" }
  | { kind: "challenge"; challenge: string }
  | { kind: "timeout" }
  | { kind: "retry"; reason: string }
  | { kind: "fatal"; error: XimError };

/** What the loop asks of the session. */
export interface LeaseLoopSession {
  readonly log: Logger;
  readonly endpoint: string;
  stopping(): boolean;
  /** Set when the router revoked this node: the loop ends with it. */
  revoked(): XimError | null;
  /** The router refused the lease since it was granted (lease_refused). */
  refused(): boolean;
  /** One registration attempt over the current connection (opened when there is none). */
  register(attempt: number): Promise<RegisterOutcome>;
  lease(): LeaseInfo | null;
  dropLease(): void;
  /** When the last lease_ack arrived (the session's clock). */
  lastAckAt(): number;
  renew(lease: LeaseInfo, seq: number): Promise<unknown>;
  /** Close the connection (a new one gets new routing ids). */
  disconnect(): Promise<void>;
  /** Sleep, woken early by stop() or a refusal. */
  sleep(ms: number): Promise<void>;
  now(): number;
  random?: () => number;
  onLost?: (reason: string) => void;
}

/**
 * Failed registrations are logged at warn on the 1st, 2nd, 4th, 8th ...
 * attempt and at debug in between: a node that waits hours for its router
 * says so, without a line every few seconds.
 */
export function loudAttempt(attempt: number): boolean {
  const n = attempt + 1;
  return (n & (n - 1)) === 0;
}

/** Runs until the session stops; rejects with the XimError of a refusal for good. */
export async function runLeaseLoop(s: LeaseLoopSession, renewalSettingMs: number): Promise<void> {
  const policy = reconnectPolicy(renewalSettingMs);
  let attempt = 0;
  try {
    while (!s.stopping()) {
      const revoked = s.revoked();
      if (revoked) throw revoked;
      const outcome = await s.register(attempt);
      if (outcome.kind === "fatal") throw outcome.error;
      if (outcome.kind === "ok") {
        attempt = 0;
        const why = await holdLease(s);
        const revokedNow = s.revoked();
        if (revokedNow) throw revokedNow;
        if (why === "stopped") break;
        // Refused: register again at once (a new epoch), no backoff.
        if (why === "refused") continue;
        s.onLost?.(why);
      } else {
        const fields = {
          attempt,
          endpoint: s.endpoint,
          reason: outcome.kind === "retry" ? outcome.reason : "no answer",
        };
        if (loudAttempt(attempt)) s.log.warn(fields, "registration failed; retrying with backoff");
        else s.log.debug(fields, "registration failed; retrying with backoff");
      }
      if (s.stopping()) break;
      await s.disconnect();
      const delay = backoffDelay(policy, attempt++, s.random);
      s.log.info({ delayMs: delay, attempt }, "reconnecting to the router");
      await s.sleep(delay);
    }
  } finally {
    s.dropLease();
  }
}

/** Renew until stopped ("stopped"), refused ("refused") or lost (why, for the log). */
async function holdLease(s: LeaseLoopSession): Promise<"stopped" | "refused" | string> {
  let seq = 0;
  while (true) {
    const lease = s.lease();
    if (!lease) return "refused";
    await s.sleep(lease.renewalIntervalMs);
    if (s.stopping()) return "stopped";
    if (s.refused() || s.revoked() !== null) {
      s.dropLease();
      return "refused";
    }
    const silent = s.now() - s.lastAckAt();
    if (silent > leaseLostAfterMs(lease.leaseDurationMs)) {
      s.log.warn(
        { silentMs: silent, epoch: lease.epoch },
        "no lease renewal answered within the lease duration; reconnecting",
      );
      s.dropLease();
      return `no answer for ${silent} ms`;
    }
    await s.renew(lease, seq++);
  }
}
