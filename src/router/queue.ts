/**
 * @module Where a request goes: node selection and the Xerotier documentation's single-node
 * queueing. A request may use a node with a live, ready lease in its
 * project that serves its model. Among those with a free slot the one
 * with the most free slots wins (the router counts its own dispatches,
 * so it never over-commits between two renewals). When exactly one
 * compatible node exists and it is full, the request is parked (at most
 * `queueMax` per node, `queueTimeoutMs` each) and dispatched when a slot
 * frees; else the answer is 503, with the advice of when to retry
 * (retry-after.ts). A node that expires, drains or reports a blocking
 * condition gets no new requests, and its parked requests are placed again.
 *
 * When no node may take a model's request but the project has nodes that
 * serve it (offline: lease expired, given back, or not reconnected since
 * the router started; blocked by a condition; draining; engine not ready),
 * the request is held for them within the same limits (`queueMax` per
 * such node, `queueTimeoutMs` from its arrival): the Xerotier
 * documentation's "they queue until your node reconnects". Past them the
 * 503 names why each node is away (node-availability.ts). Only a model no
 * node of the project ever served here is refused at once (404): there is
 * nothing to wait for.
 */
import type { RouterMetrics } from "../observability/router-metrics.ts";
import type { Lease } from "./control-plane.ts";
import { holdReason, isAvailable, whyAllUnavailable } from "./node-availability.ts";
import { DrainRate, RETRY_AFTER_BOUNDS } from "./retry-after.ts";

export interface QueueSettings {
  /** Requests parked per node at most (the Xerotier documentation: 10). */
  queueMax: number;
  /** How long a parked request waits for a slot before its 503 (the Xerotier documentation: 30 s). */
  queueTimeoutMs: number;
}

export const DEFAULT_QUEUE: QueueSettings = { queueMax: 10, queueTimeoutMs: 30_000 };

/** Requests that may wait for away nodes at once, all models together; more get their answer at once. */
const MAX_AWAITING_RETURN = 1000;

export type Placement =
  | { ok: true; lease: Lease; queued: boolean; queuedMs: number }
  | {
      ok: false;
      status: number;
      code: string;
      message: string;
      outcome: string;
      /** A 503's advice of when to retry (retry-after.ts). */
      retryAfterMs?: number;
    };

/** What the scheduler needs of the control plane. */
export interface LeaseSource {
  leases(): Lease[];
  lease(nodeId: string): Lease | undefined;
}

interface Waiter {
  project: string;
  model: string;
  /** The node whose queue holds it ("" while not parked on a node). */
  nodeId: string;
  /** Parked at some point (on a node, or waiting for returning nodes). */
  parked: boolean;
  /** Held for away nodes at some point (counted once in the requests-held metric). */
  held?: boolean;
  since: number;
  timer: NodeJS.Timeout;
  settle: (p: Placement) => void;
}

function serves(l: Lease, project: string, model: string): boolean {
  return l.project === project && l.status.models.includes(model);
}

/** The key of a held request's project and model (unique: a project name, validated, has no newline). */
function heldKey(w: Waiter): string {
  return `${w.project}\n${w.model}`;
}

function compatible(l: Lease, project: string, model: string): boolean {
  return isAvailable(l) && serves(l, project, model);
}

export class Scheduler {
  readonly #leases: LeaseSource;
  readonly #o: QueueSettings;
  readonly #metrics: RouterMetrics | undefined;
  readonly #inflight = new Map<string, number>();
  readonly #queues = new Map<string, Waiter[]>();
  /** Slots freed per node lately: the Retry-After of a 503 for capacity. */
  readonly #drain = new DrainRate();
  /** Requests held for nodes that are offline or blocked (node-availability.ts), until one is back. */
  #awaitingReturn: Waiter[] = [];
  /** How many of those wait for each project's model (key: heldKey), for the per-node limit. */
  readonly #heldPerModel = new Map<string, number>();

  constructor(leases: LeaseSource, settings: QueueSettings, metrics?: RouterMetrics) {
    this.#leases = leases;
    this.#o = settings;
    this.#metrics = metrics;
  }

  inflight(nodeId: string): number {
    return this.#inflight.get(nodeId) ?? 0;
  }

  queued(nodeId?: string): number {
    if (nodeId) return this.#queues.get(nodeId)?.length ?? 0;
    let n = this.#awaitingReturn.length;
    for (const q of this.#queues.values()) n += q.length;
    return n;
  }

  #free(l: Lease): number {
    return l.status.maxConcurrent - this.inflight(l.nodeId);
  }

  #take(l: Lease): void {
    this.#inflight.set(l.nodeId, this.inflight(l.nodeId) + 1);
  }

  /** Reserve a slot on a node for one request, waiting in the queue when the Xerotier documentation's rule says so. */
  acquire(project: string, model: string, signal?: AbortSignal): Promise<Placement> {
    return new Promise((resolve) => {
      const since = Date.now();
      let settled = false;
      const settle = (p: Placement) => {
        if (settled) return;
        settled = true;
        signal?.removeEventListener("abort", onAbort);
        resolve(!p.ok && p.status === 503 ? { ...p, retryAfterMs: this.retryAfterMs(project, model) } : p);
      };
      const onAbort = () => {
        this.#forget(waiter);
        settle({
          ok: false,
          status: 499,
          code: "cancelled",
          message: "the client went away",
          outcome: "cancelled",
        });
      };
      const waiter: Waiter = {
        project,
        model,
        nodeId: "",
        parked: false,
        since,
        timer: undefined as unknown as NodeJS.Timeout,
        settle,
      };
      if (signal?.aborted) return onAbort();
      signal?.addEventListener("abort", onAbort, { once: true });
      this.#place(waiter);
    });
  }

  /**
   * How long a client refused a slot for `model` should wait before it
   * retries: from the drain rate of the ready nodes serving it and the
   * requests already parked on them (retry-after.ts).
   */
  retryAfterMs(project: string, model: string): number {
    const nodes = this.#leases.leases().filter((l) => compatible(l, project, model));
    if (nodes.length === 0) return RETRY_AFTER_BOUNDS.UNKNOWN_MS;
    const ahead = nodes.reduce((n, l) => n + this.queued(l.nodeId), 0);
    return this.#drain.retryAfterMs(
      nodes.map((l) => l.nodeId),
      ahead,
      Date.now(),
    );
  }

  /** A request on `nodeId` finished: free its slot and serve the queue. */
  release(nodeId: string): void {
    this.#drain.note(nodeId, Date.now());
    const n = this.inflight(nodeId) - 1;
    if (n <= 0) this.#inflight.delete(nodeId);
    else this.#inflight.set(nodeId, n);
    this.pump();
  }

  /** Re-examine every queue: dispatch where slots are free, move requests off nodes that stopped being ready. */
  pump(): void {
    if (this.#awaitingReturn.length > 0) {
      const waiting = this.#awaitingReturn;
      this.#awaitingReturn = [];
      this.#heldPerModel.clear();
      for (const w of waiting) {
        clearTimeout(w.timer);
        this.#place(w);
      }
    }
    for (const [nodeId, queue] of [...this.#queues]) {
      const lease = this.#leases.lease(nodeId);
      if (!lease || !isAvailable(lease)) {
        this.#queues.delete(nodeId);
        for (const w of queue) {
          clearTimeout(w.timer);
          this.#place(w);
        }
        continue;
      }
      while (queue.length > 0 && this.#free(lease) > 0) {
        const w = queue.shift() as Waiter;
        clearTimeout(w.timer);
        this.#take(lease);
        w.settle({ ok: true, lease, queued: true, queuedMs: Date.now() - w.since });
      }
      if (queue.length === 0) this.#queues.delete(nodeId);
    }
    this.#metrics?.queueDepth.set(this.queued());
  }

  /** Answer every parked request with 503 (the router is stopping). */
  close(): void {
    for (const queue of [...this.#queues.values(), this.#awaitingReturn])
      for (const w of queue) {
        clearTimeout(w.timer);
        w.settle({
          ok: false,
          status: 503,
          code: "router_stopping",
          message: "the router is shutting down",
          outcome: "no_node",
        });
      }
    this.#queues.clear();
    this.#awaitingReturn = [];
    this.#heldPerModel.clear();
    this.#metrics?.queueDepth.set(0);
  }

  #forget(w: Waiter): void {
    clearTimeout(w.timer);
    const waiting = this.#awaitingReturn.indexOf(w);
    if (waiting >= 0) {
      this.#awaitingReturn.splice(waiting, 1);
      this.#countHeld(w, -1);
      this.#metrics?.queueDepth.set(this.queued());
      return;
    }
    const q = this.#queues.get(w.nodeId);
    if (!q) return;
    const i = q.indexOf(w);
    if (i >= 0) q.splice(i, 1);
    if (q.length === 0) this.#queues.delete(w.nodeId);
    this.#metrics?.queueDepth.set(this.queued());
  }

  #place(w: Waiter): void {
    const all = this.#leases.leases();
    const candidates = all.filter((l) => compatible(l, w.project, w.model));
    if (candidates.length === 0) {
      // Any lease counts, expired ones too: the model exists in this project, its nodes are away.
      const away = all.filter((l) => serves(l, w.project, w.model));
      if (away.length > 0) this.#awaitReturn(w, away);
      else
        w.settle({
          ok: false,
          status: 404,
          code: "model_not_found",
          message: `the model '${w.model}' does not exist or no node of this project serves it`,
          outcome: "client_error",
        });
      return;
    }
    let best: Lease | undefined;
    for (const l of candidates)
      if (this.#free(l) > 0 && (!best || this.#free(l) > this.#free(best))) best = l;
    if (best) {
      this.#take(best);
      w.settle({ ok: true, lease: best, queued: w.parked, queuedMs: Date.now() - w.since });
      return;
    }
    if (candidates.length > 1) {
      w.settle({
        ok: false,
        status: 503,
        code: "no_capacity",
        message: `all ${candidates.length} nodes serving '${w.model}' are at capacity; retry shortly`,
        outcome: "no_node",
      });
      return;
    }
    const node = candidates[0];
    const queue = this.#queues.get(node.nodeId) ?? [];
    if (queue.length >= this.#o.queueMax) {
      w.settle({
        ok: false,
        status: 503,
        code: "queue_full",
        message: `the only node serving '${w.model}' is at capacity and ${queue.length} requests already wait for it`,
        outcome: "queue_full",
      });
      return;
    }
    w.nodeId = node.nodeId;
    w.parked = true;
    w.timer = setTimeout(() => {
      this.#forget(w);
      this.#timedOut(w, `no slot freed on the node serving '${w.model}'`);
    }, this.#left(w));
    queue.push(w);
    this.#queues.set(node.nodeId, queue);
    this.#metrics?.queueDepth.set(this.queued());
  }

  /** Milliseconds of a request's queue timeout still left. */
  #left(w: Waiter): number {
    return Math.max(0, w.since + this.#o.queueTimeoutMs - Date.now());
  }

  #timedOut(w: Waiter, what: string, why?: string): void {
    this.#metrics?.queueTimeouts.inc();
    w.settle({
      ok: false,
      status: 503,
      code: "queue_timeout",
      message: `${what} within ${this.#o.queueTimeoutMs} ms${why ? `: ${why}` : ""}`,
      outcome: "queue_timeout",
    });
  }

  /**
   * Hold a request no node may take now for `away`, the nodes serving its
   * model that are not available (offline, blocked, not ready): at most `queueMax` per
   * such node, until its queue timeout. pump() places it again at every
   * lease or blocking change, so it is served as soon as one is back.
   */
  #awaitReturn(w: Waiter, away: Lease[]): void {
    const holding = this.#heldPerModel.get(heldKey(w)) ?? 0;
    if (holding >= this.#o.queueMax * away.length || this.#awaitingReturn.length >= MAX_AWAITING_RETURN) {
      w.settle({
        ok: false,
        status: 503,
        code: "queue_full",
        message: `no node may serve '${w.model}' now and ${holding} requests already wait for one: ${whyAllUnavailable(away)}`,
        outcome: "queue_full",
      });
      return;
    }
    if (!w.held) this.#metrics?.requestsHeld.inc({ reason: holdReason(away) });
    w.held = true;
    w.nodeId = "";
    w.parked = true;
    w.timer = setTimeout(() => {
      this.#forget(w);
      // The reasons of now, not of when it began to wait: a node may have gone from blocked to offline.
      const still = this.#leases.leases().filter((l) => serves(l, w.project, w.model));
      this.#timedOut(w, `no node could serve '${w.model}'`, whyAllUnavailable(still.length ? still : away));
    }, this.#left(w));
    this.#awaitingReturn.push(w);
    this.#countHeld(w, 1);
    this.#metrics?.queueDepth.set(this.queued());
  }

  #countHeld(w: Waiter, delta: number): void {
    const n = (this.#heldPerModel.get(heldKey(w)) ?? 0) + delta;
    if (n > 0) this.#heldPerModel.set(heldKey(w), n);
    else this.#heldPerModel.delete(heldKey(w));
  }
}
