/**
 * @module Why a node the router knows cannot take a request now, in words a
 * client and an operator can act on. Two reasons make the router hold a
 * request for the node instead of refusing it at once (queue.ts): the node
 * reports a `blocking` condition (src/protocol/conditions.ts), or it is
 * offline (its lease expired or was given back, or it has not reconnected
 * since the router started). The Xerotier documentation: requests to a node
 * that goes offline "queue until your node reconnects".
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

/** Worth holding a request for: the node is offline or blocked, and it may come back. */
export function mayReturn(lease: Lease): boolean {
  return isOffline(lease) || blockedBy(lease).length > 0;
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
  return `node ${lease.nodeId} is ${lease.state}`;
}

/** Every reason of the nodes a held request waits for, joined for one error message. */
export function whyAllUnavailable(leases: readonly Lease[]): string {
  return leases.map(whyUnavailable).join("; ");
}
