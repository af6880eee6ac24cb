/**
 * @module The node's lease timing, as plain functions: how often to renew,
 * when a silent router counts as lost, how long to wait for a register
 * answer, and the reconnect backoff (exponential, full jitter, so a fleet
 * that lost its router does not come back in lockstep).
 */
import type { BackoffPolicy } from "../core/backoff.ts";

export const RECONNECT_MAX_MS = 30_000;

/** Renew at the configured interval, but at least twice per granted lease. */
export function renewalIntervalMs(
  configuredMs: number,
  grantedLeaseMs: number,
  routerSuggestedMs?: number,
): number {
  const candidates = [configuredMs, Math.floor(grantedLeaseMs / 2)];
  if (routerSuggestedMs && routerSuggestedMs > 0) candidates.push(routerSuggestedMs);
  return Math.max(50, Math.min(...candidates));
}

/** No lease_ack for a whole lease duration: the router has let the lease go (or is gone). */
export function leaseLostAfterMs(grantedLeaseMs: number): number {
  return grantedLeaseMs;
}

/** How long a register may go unanswered before the attempt counts as failed. */
export function registerTimeoutMs(renewalMs: number, leaseMs: number): number {
  return Math.max(500, Math.min(leaseMs, Math.max(2 * renewalMs, 1000)));
}

export function reconnectPolicy(renewalMs: number): BackoffPolicy {
  return { baseMs: Math.min(1000, renewalMs), maxMs: RECONNECT_MAX_MS, jitter: "full" };
}
