/**
 * @module Why a node the router knows cannot take a request now, in words a
 * client and an operator can act on: the 503 of a request held for it past
 * the queue's limits (queue.ts) says it. The node reports a `blocking`
 * condition (src/protocol/conditions.ts), is offline (its lease expired or
 * was given back, or it has not reconnected since the router started), is
 * draining, or its engine is not ready.
 */
import { isoTime } from "../core/time-text.ts";
import { blockingConditions, type NodeCondition } from "../protocol/conditions.ts";
import type { Lease } from "./control-plane.ts";

/** The lease's blocking conditions (empty: nothing stops dispatch to it). */
export function blockedBy(lease: Lease): NodeCondition[] {
  return blockingConditions(lease.conditions);
}

/** The node holds no live connection: expired, released, or a lease of the router's previous run. */
export function isOffline(lease: Lease): boolean {
  return lease.state === "expired" || lease.controlRoutingId === null;
}

/** May take a request now: connected, engine ready, not draining, nothing blocking. */
export function isAvailable(lease: Lease): boolean {
  return lease.state === "ready" && !isOffline(lease) && blockedBy(lease).length === 0;
}

/** The requests-held metric's reason for nodes a request waits for: a condition first, then a lost connection. */
export function holdReason(away: readonly Lease[]): "blocked" | "offline" | "not_ready" {
  if (away.some((l) => !isOffline(l) && blockedBy(l).length > 0)) return "blocked";
  return away.some(isOffline) ? "offline" : "not_ready";
}

/** `gpu_lost (GPU 0 stopped answering; fix: ...)`, for each condition, joined. */
export function describeConditions(conditions: readonly NodeCondition[]): string {
  return conditions.map((c) => `${c.condition} (${c.message}; fix: ${c.fix})`).join(", ");
}

/** One node's reason, e.g. `node node_ab is offline since 2026-12-06T23:00:00.000Z (its lease expired)`. */
export function whyUnavailable(lease: Lease): string {
  if (isOffline(lease)) {
    if (lease.offlineSince === undefined)
      return `node ${lease.nodeId} has not reconnected since the router started`;
    const how = lease.offlineReason ?? "its lease expired";
    return `node ${lease.nodeId} is offline since ${isoTime(lease.offlineSince)} (${how})`;
  }
  const blocking = blockedBy(lease);
  if (blocking.length > 0) return `node ${lease.nodeId} is blocked by ${describeConditions(blocking)}`;
  if (lease.state === "draining") return `node ${lease.nodeId} is draining`;
  return `node ${lease.nodeId} has its engine ${lease.status.engine}`;
}

/** Every reason of the nodes a held request waits for, joined for one error message. */
export function whyAllUnavailable(leases: readonly Lease[]): string {
  return leases.map(whyUnavailable).join("; ");
}
