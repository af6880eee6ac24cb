/**
 * @module `xim router nodes` as data: every enrolled node with the state of
 * its lease. A lease whose renewals stopped counts as expired even when
 * the router that would have marked it is not running. Each node carries
 * its model assignment and the latest pull progress it reported, its
 * lifecycle state and the conditions its live lease reports.
 * `revokeNode` is `xim router nodes revoke`: it only writes the state
 * database; the running router (another process) picks the revocation up
 * within a second (control-plane.ts) and ends the node's lease and streams.
 */
import { isoTime } from "../core/time-text.ts";
import type { NodeCondition, NodeState as ReportedState } from "../protocol/conditions.ts";
import { findNode } from "./model-assignments.ts";
import {
  type AssignmentRow,
  type NodeRow,
  type NodeState,
  RELEASED_BY_NODE,
  type RouterStore,
} from "./store.ts";

/** The router's view of a node's lease: `stopped`, the node gave it back (a clean stop); `expired`, its renewals stopped. */
export type LeaseState = NodeState | "enrolled" | "revoked" | "stopped";

export interface NodeListing {
  nodeId: string;
  project: string;
  hostname: string;
  /**
   * The node's state: while its lease is live, what it reports (registering,
   * loading, ready, draining; `registered` from a node that does not say);
   * else the router's own: `offline` (renewals stopped), `stopped` (gave its
   * lease back), `revoked`, or `enrolled` (never registered).
   */
  state: ReportedState | "registered" | "offline" | "enrolled" | "revoked" | "stopped";
  /** The router's view of the lease (see LeaseState). */
  leaseState: LeaseState;
  /** What the node's live lease reports wrong (empty when none, or when the node is gone). */
  conditions: NodeCondition[];
  stateReason: string | null;
  epoch: number;
  lastRenewal: string | null;
  lastRenewalAgoMs: number | null;
  leaseMs: number | null;
  engine: string;
  models: string[];
  maxConcurrent: number;
  freeSlots: number;
  agentVersion: string;
  labels: Record<string, string>;
  enrolledAt: string;
  /** When the operator revoked the node (ISO 8601); null while it is not revoked. */
  revokedAt: string | null;
  hardware: Record<string, unknown> | null;
  /** The assigned model (`xim router models assign`) and its latest pull progress; null when none. */
  assignment: AssignmentRow | null;
}

export function effectiveState(n: NodeRow, now: number): LeaseState {
  if (n.revokedAt !== null) return "revoked";
  if (n.state === null) return "enrolled";
  if (n.state === "expired" && n.stateReason === RELEASED_BY_NODE) return "stopped";
  if (
    n.state !== "expired" &&
    n.lastRenewal !== null &&
    n.leaseMs !== null &&
    now - n.lastRenewal > n.leaseMs
  )
    return "expired";
  return n.state;
}

function isLive(state: LeaseState): boolean {
  return state === "registered" || state === "ready" || state === "draining";
}

function live(n: NodeRow, now: number): boolean {
  return isLive(effectiveState(n, now));
}

/** The state `xim router nodes` shows (NodeListing.state): the node's own while it is live. */
export function shownState(n: NodeRow, now: number): NodeListing["state"] {
  const lease = effectiveState(n, now);
  if (lease === "expired") return "offline";
  if (!isLive(lease)) return lease;
  // The router knows of a drain even from a node that reports no state.
  if (lease === "draining") return "draining";
  return n.reportedState ?? lease;
}

export function listNodes(store: RouterStore, now = Date.now()): NodeListing[] {
  const assignments = new Map(store.listAssignments().map((a) => [a.nodeId, a]));
  return store.listNodes().map((n) => ({
    nodeId: n.nodeId,
    project: n.project,
    hostname: n.hostname,
    state: shownState(n, now),
    leaseState: effectiveState(n, now),
    // Like the engine: a node without a lease reports nothing, its last conditions would read as live.
    conditions: live(n, now) ? n.conditions : [],
    stateReason: n.stateReason,
    epoch: n.epoch,
    lastRenewal: n.lastRenewal === null ? null : isoTime(n.lastRenewal),
    lastRenewalAgoMs: n.lastRenewal === null ? null : now - n.lastRenewal,
    leaseMs: n.leaseMs,
    // A node without a lease reports nothing: its last engine state would read as live.
    engine: live(n, now) ? n.engine : "-",
    models: n.models,
    maxConcurrent: n.maxConcurrent,
    freeSlots: n.freeSlots,
    agentVersion: n.agentVersion,
    labels: n.labels,
    enrolledAt: isoTime(n.enrolledAt),
    revokedAt: n.revokedAt === null ? null : isoTime(n.revokedAt),
    hardware: n.hardware,
    assignment: assignments.get(n.nodeId) ?? null,
  }));
}

export interface RevokedNode {
  nodeId: string;
  /** When it was revoked (ISO 8601): the first revocation's time when it already was. */
  revokedAt: string;
  /** It was revoked before this call; nothing changed. */
  alreadyRevoked: boolean;
}

/**
 * Revoke an enrolled node by its id or an unambiguous prefix (an unknown or
 * ambiguous id is a usage error that lists the candidates). Its key is
 * refused from now on at every CURVE handshake, registration and enrollment.
 */
export function revokeNode(store: RouterStore, idOrPrefix: string, now = Date.now()): RevokedNode {
  const node = findNode(store, idOrPrefix);
  const revoked = store.revokeNode(node.nodeId, now);
  const at = revoked?.revokedAt ?? now;
  return {
    nodeId: node.nodeId,
    revokedAt: new Date(at).toISOString(),
    alreadyRevoked: node.revokedAt !== null,
  };
}
