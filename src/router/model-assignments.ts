/**
 * @module Which published model each node should serve
 * (`xim router models assign NODE_ID NAME`), and how the running router
 * gets it there: it sends the node `model_assign`, the node pulls
 * `router://NAME` over its own connection and reports `model_progress`,
 * which is kept in the store for `xim router nodes`.
 *
 * The command and `xim router serve` are different processes sharing the
 * state folder's SQLite database, which has no change notification across
 * processes; so the service polls the assignments table (one indexed query
 * a second: cheap, and an assignment reaches its node within about a
 * second) instead of needing a control socket of its own. A node that
 * registers again (restart, reconnect) is sent its assignment again unless
 * it already reports the model as ready.
 */
import { randomBytes } from "node:crypto";
import { formatBytes } from "../core/bytes-text.ts";
import { ExitCode, XimError } from "../core/errors.ts";
import { guarded } from "../core/guard.ts";
import type { Logger } from "../core/log.ts";
import type { ModelLibrary } from "../models/library.ts";
import type { NodeMessageOf } from "../protocol/messages.ts";
import type { ControlPlane, Lease } from "./control-plane.ts";
import type { AssignmentRow, NodeRow, RouterStore } from "./store.ts";

/** How often the service looks for new assignments (written by another process). */
export const ASSIGNMENT_POLL_MS = 1000;

/** A node by its id or an unambiguous prefix of it; the error lists what is accepted. */
export function findNode(store: RouterStore, idOrPrefix: string): NodeRow {
  const nodes = store.listNodes();
  const exact = nodes.find((n) => n.nodeId === idOrPrefix);
  const matches = exact ? [exact] : idOrPrefix ? nodes.filter((n) => n.nodeId.startsWith(idOrPrefix)) : [];
  if (matches.length === 1) return matches[0];
  const known = nodes.map((n) => n.nodeId);
  const listed = known.length
    ? `enrolled nodes: ${known.slice(0, 10).join(", ")}${known.length > 10 ? `, and ${known.length - 10} more` : ""}`
    : "no node is enrolled with this router";
  throw new XimError(
    "XIM_NODE_NOT_FOUND",
    matches.length > 1
      ? `'${idOrPrefix}' matches ${matches.length} nodes (${matches.map((n) => n.nodeId).join(", ")}); give more of the id`
      : `no enrolled node '${idOrPrefix}'; ${listed}`,
    { hint: "list the nodes with 'xim router nodes'", exitCode: ExitCode.usage },
  );
}

/**
 * Assign a published model to an enrolled node (what `xim router models
 * assign` calls). A running router sends it to the node within about a
 * second; a node that is offline gets it when it registers.
 */
export async function assignModel(
  store: RouterStore,
  library: ModelLibrary,
  nodeIdOrPrefix: string,
  name: string,
  now = Date.now(),
): Promise<AssignmentRow> {
  const node = findNode(store, nodeIdOrPrefix);
  if (node.revokedAt !== null) {
    throw new XimError("XIM_NODE_REVOKED", `node ${node.nodeId} was revoked; it cannot serve models`, {
      hint: "enroll the machine again with a new join key, then assign to its new node id",
    });
  }
  if (!(await library.get(name))) {
    const published = (await library.list()).map((m) => m.name);
    throw new XimError(
      "XIM_MODEL_NOT_FOUND",
      `the router publishes no model named '${name}'; ${published.length ? `published: ${published.join(", ")}` : "it publishes none yet"}`,
      {
        hint: "publish it first: xim router models add NAME /path/to/model-folder",
        exitCode: ExitCode.usage,
      },
    );
  }
  return store.assignModel(node.nodeId, name, `as_${randomBytes(8).toString("hex")}`, now);
}

/** Forget a node's assignment (the node keeps serving what it serves until it gets another). */
export function unassignModel(store: RouterStore, nodeIdOrPrefix: string): { nodeId: string; had: boolean } {
  const node = findNode(store, nodeIdOrPrefix);
  return { nodeId: node.nodeId, had: store.unassignModel(node.nodeId) };
}

/** One cell of `xim router nodes`: `router://NAME 42% (1.2 GB of 2.9 GB)`, `... ready`, `... failed: why`. */
export function describeAssignment(a: AssignmentRow | null): string {
  if (!a) return "-";
  const ref = `router://${a.name}`;
  const p = a.progress;
  if (!p) return `${ref} assigned`;
  switch (p.state) {
    case "pulling": {
      const pct = p.bytesTotal > 0 ? Math.floor((100 * p.bytesDone) / p.bytesTotal) : 0;
      return `${ref} ${pct}% (${formatBytes(p.bytesDone)} of ${formatBytes(p.bytesTotal)})`;
    }
    case "verifying":
      return `${ref} verifying`;
    case "ready":
      return `${ref} ready`;
    case "failed":
      return `${ref} failed: ${p.message ?? "unknown reason"}`;
  }
}

export interface ModelAssignerOptions {
  store: RouterStore;
  controlPlane: ControlPlane;
  logger: Logger;
  pollMs?: number;
  now?: () => number;
}

/** The running router's half: deliver assignments to nodes and record their progress. */
export class ModelAssigner {
  readonly #o: ModelAssignerOptions;
  readonly #log: Logger;
  readonly #now: () => number;
  /** nodeId -> the assignment last sent and the lease it went to: one model_assign per assignment and lease. */
  readonly #sent = new Map<string, { assignmentId: string; leaseId: string }>();
  readonly #lastState = new Map<string, string>();
  readonly #unsubscribe: Array<() => void> = [];
  #timer: NodeJS.Timeout | undefined;

  constructor(o: ModelAssignerOptions) {
    this.#o = o;
    this.#log = o.logger.child({ component: "model-assign" });
    this.#now = o.now ?? Date.now;
    const cp = o.controlPlane;
    this.#unsubscribe.push(
      // A (re)registration: deliver at once rather than at the next poll (repeats are skipped).
      cp.onLeaseChange((lease) => this.#deliverTo(lease)),
      cp.onNodeMessage((lease, m) => {
        if (m.type === "model_progress") this.#progress(lease, m);
      }),
    );
    this.#timer = setInterval(
      guarded(this.#log, "model assignment poll", () => this.poll()),
      o.pollMs ?? ASSIGNMENT_POLL_MS,
    );
    this.#timer.unref?.();
  }

  /** Look for assignments a live node has not been sent yet (also what the timer runs). */
  poll(): void {
    let rows: AssignmentRow[];
    try {
      rows = this.#o.store.listAssignments();
    } catch (err) {
      this.#log.warn({ err }, "could not read the model assignments");
      return;
    }
    const assigned = new Set(rows.map((r) => r.nodeId));
    for (const [nodeId, sent] of this.#sent)
      if (!assigned.has(nodeId)) {
        this.#sent.delete(nodeId);
        this.#withdraw(nodeId, sent.assignmentId);
      }
    for (const row of rows) {
      const lease = this.#o.controlPlane.lease(row.nodeId);
      if (lease) this.#deliver(lease, row);
    }
  }

  close(): void {
    clearInterval(this.#timer);
    for (const un of this.#unsubscribe) un();
  }

  #deliverTo(lease: Lease): void {
    try {
      const row = this.#o.store.getAssignment(lease.nodeId);
      if (row) this.#deliver(lease, row);
    } catch (err) {
      this.#log.warn({ err, nodeId: lease.nodeId }, "could not read the node's model assignment");
    }
  }

  #deliver(lease: Lease, row: AssignmentRow): void {
    if (lease.state === "expired" || lease.controlRoutingId === null) return;
    const last = this.#sent.get(lease.nodeId);
    if (last?.assignmentId === row.assignmentId && last.leaseId === lease.leaseId) return;
    const sent = { assignmentId: row.assignmentId, leaseId: lease.leaseId };
    this.#sent.set(lease.nodeId, sent);
    if (row.progress?.state === "ready" && lease.status.models.includes(row.name)) return;
    this.#log.info(
      { nodeId: lease.nodeId, model: row.name, assignmentId: row.assignmentId, epoch: lease.epoch },
      "sending the node its model assignment",
    );
    void this.#o.controlPlane
      .send(lease.nodeId, { type: "model_assign", assignmentId: row.assignmentId, name: row.name })
      .then((queued) => {
        // Not queued (the lease ended meanwhile): try again on the next poll or registration.
        if (!queued && this.#sent.get(lease.nodeId) === sent) this.#sent.delete(lease.nodeId);
      });
  }

  /** `xim router models unassign` removed the row: stop the node's pull if it still runs. */
  #withdraw(nodeId: string, assignmentId: string): void {
    const lease = this.#o.controlPlane.lease(nodeId);
    if (!lease || lease.state === "expired" || lease.controlRoutingId === null) return;
    this.#log.info({ nodeId, assignmentId }, "the node's model assignment was withdrawn");
    void this.#o.controlPlane.send(nodeId, { type: "model_unassign", assignmentId });
  }

  #progress(lease: Lease, m: NodeMessageOf<"model_progress">): void {
    const stored = this.#o.store.recordModelProgress(lease.nodeId, m.assignmentId, {
      state: m.state,
      bytesDone: m.bytesDone,
      bytesTotal: m.bytesTotal,
      ...(m.message !== undefined ? { message: m.message } : {}),
      at: this.#now(),
    });
    if (!stored) return; // progress of an assignment replaced since
    const stateKey = `${m.assignmentId} ${m.state}`;
    if (this.#lastState.get(lease.nodeId) === stateKey) return;
    this.#lastState.set(lease.nodeId, stateKey);
    const fields = { nodeId: lease.nodeId, model: m.name, assignmentId: m.assignmentId, state: m.state };
    if (m.state === "failed") this.#log.warn({ ...fields, reason: m.message }, "model pull failed");
    else this.#log.info(fields, `model pull: ${m.state}`);
  }
}
