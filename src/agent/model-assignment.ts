/**
 * @module The node's half of a model assignment (`model_assign` from the
 * router): pull `router://NAME` with the same code as `xim pull` (cache,
 * lock, verification, atomic placement, resume) over the session's own
 * connection while the current engine keeps serving, report progress to
 * the router (`model_progress`: at most one byte count per interval, every
 * change of state at once) and to the log, then hand the placed model to
 * `serve`, which replaces the engine. A failed pull or engine swap reports
 * `failed` with the reason and leaves the engine as it was; a new
 * assignment (or the same one sent again after a reconnect) tries again.
 * `model_unassign` stops a pull still running.
 */

import { messageOf, XimError } from "../core/errors.ts";
import type { Logger } from "../core/log.ts";
import { lineReporter, type PullEvent } from "../models/progress.ts";
import { type PullConfig, pullModel } from "../models/pull.ts";
import { RouterSource } from "../models/sources/router.ts";
import type { NodeMetrics } from "../observability/node-metrics.ts";
import type { NodeMessageOf, RouterMessageOf } from "../protocol/messages.ts";
import type { ModelChannel } from "../protocol/model-transfer.ts";

/** A `model_progress` message without its envelope (the session adds the lease). */
export type ModelProgressReport = Omit<NodeMessageOf<"model_progress">, "v" | "type" | "leaseId" | "epoch">;

export interface ModelAssignmentsOptions {
  config: PullConfig;
  logger: Logger;
  /** The node's connection to the router for model transfers (NodeSession.modelChannel). */
  channel: ModelChannel;
  /** Send a progress report to the router; false when it could not be sent (resent at registration). */
  report: (p: ModelProgressReport) => Promise<boolean>;
  /**
   * Serve the pulled model (replace the engine); throws with the reason when
   * it cannot. `alreadyCached`: the cache held these very files before the pull.
   */
  serve: (model: { name: string; path: string; alreadyCached: boolean }) => Promise<void>;
  now?: () => number;
  /** Least time between two byte-count reports to the router. */
  reportIntervalMs?: number;
  /** Least time between two progress lines in the log. */
  logIntervalMs?: number;
  /** xim_node_model_pulls_total and xim_node_model_pull_bytes_total. */
  metrics?: Pick<NodeMetrics, "modelPulls" | "modelPullBytes">;
}

interface Current {
  assignmentId: string;
  name: string;
  abort: AbortController;
  done: Promise<void>;
  finished: "ready" | "failed" | null;
}

export class ModelAssignments {
  readonly #o: ModelAssignmentsOptions;
  readonly #log: Logger;
  readonly #now: () => number;
  #current: Current | undefined;
  #last: ModelProgressReport | undefined;
  #closed = false;

  constructor(o: ModelAssignmentsOptions) {
    this.#o = o;
    this.#log = o.logger.child({ component: "model-assign" });
    this.#now = o.now ?? Date.now;
  }

  /** The latest report (tests and the node's own status). */
  get lastReport(): ModelProgressReport | undefined {
    return this.#last;
  }

  /** The pull (and engine swap) in progress, if any; resolves when it ends. */
  get settled(): Promise<void> {
    return this.#current?.done ?? Promise.resolve();
  }

  handle(m: Pick<RouterMessageOf<"model_assign">, "assignmentId" | "name">): void {
    if (this.#closed) return;
    const cur = this.#current;
    if (cur && cur.assignmentId === m.assignmentId && cur.finished !== "failed") {
      // The same assignment again (the router sends it at every registration): say where it stands.
      this.resend();
      return;
    }
    this.#log.info({ model: m.name, assignmentId: m.assignmentId }, `the router assigned router://${m.name}`);
    const previous = cur;
    previous?.abort.abort();
    const abort = new AbortController();
    const next: Current = {
      assignmentId: m.assignmentId,
      name: m.name,
      abort,
      finished: null,
      done: Promise.resolve(),
    };
    next.done = (async () => {
      // A superseded pull lets go of its lock and staging folder before the next one starts.
      await previous?.done;
      if (abort.signal.aborted) return;
      await this.#run(next);
    })();
    this.#current = next;
  }

  /**
   * The router withdrew an assignment: a pull of it still running stops (the
   * bytes on disk stay for a later resume) and the current engine serves on.
   * An engine swap already under way finishes.
   */
  withdraw(assignmentId: string): void {
    const cur = this.#current;
    if (!cur || cur.assignmentId !== assignmentId || cur.finished !== null || cur.abort.signal.aborted)
      return;
    this.#log.info(
      { model: cur.name, assignmentId },
      `the router withdrew the assignment of router://${cur.name}: stopping its pull`,
    );
    cur.abort.abort();
  }

  /** Send the latest report again (after a registration: the router may have missed it). */
  resend(): void {
    if (this.#last) void this.#o.report(this.#last);
  }

  /** Stop a pull in progress and wait for it to end. */
  async close(): Promise<void> {
    this.#closed = true;
    this.#current?.abort.abort();
    await this.#current?.done;
  }

  async #run(a: Current): Promise<void> {
    const { name, assignmentId } = a;
    let total = 0;
    let done = 0;
    let state: ModelProgressReport["state"] = "pulling";
    let lastSent = Number.NEGATIVE_INFINITY;
    const interval = this.#o.reportIntervalMs ?? 1000;
    const send = (s: ModelProgressReport["state"], message?: string, force = false) => {
      if (a.abort.signal.aborted) return;
      const t = this.#now();
      if (!force && s === state && t - lastSent < interval) return;
      state = s;
      lastSent = t;
      const report: ModelProgressReport = {
        assignmentId,
        name,
        state: s,
        bytesDone: done,
        bytesTotal: total,
        ...(message !== undefined ? { message: message.slice(0, 4000) } : {}),
      };
      this.#last = report;
      void this.#o.report(report);
    };
    const logLine = lineReporter((line) => this.#log.info({ model: name, assignmentId }, line.trimEnd()), {
      intervalMs: this.#o.logIntervalMs ?? 10_000,
      now: this.#now,
    });
    const onEvent = (e: PullEvent) => {
      logLine(e);
      switch (e.type) {
        case "manifest":
          total = e.totalBytes;
          send("pulling", undefined, true);
          return;
        case "start":
          done = e.resumedBytes;
          send("pulling", undefined, true);
          return;
        case "progress":
          done = e.bytes;
          // Every byte is in: the last file's digest is all that is left.
          send(e.bytes >= e.totalBytes ? "verifying" : "pulling");
          return;
        case "cached":
          done = e.totalBytes;
          total = e.totalBytes;
          return;
        case "done":
          done = e.totalBytes;
          this.#o.metrics?.modelPullBytes.inc(e.downloadedBytes);
          return;
        default:
          return;
      }
    };
    send("pulling", undefined, true);
    try {
      const result = await pullModel({
        source: new RouterSource(name, this.#o.channel),
        config: this.#o.config,
        name,
        onEvent,
        signal: a.abort.signal,
        progressIntervalMs: Math.min(interval, 1000),
      }).catch((err: unknown) => {
        if (!a.abort.signal.aborted) this.#o.metrics?.modelPulls.inc({ result: "failed" });
        throw err;
      });
      this.#o.metrics?.modelPulls.inc({ result: "ok" });
      if (a.abort.signal.aborted) return;
      done = result.sizeBytes;
      total = result.sizeBytes;
      await this.#o.serve({ name: result.name, path: result.path, alreadyCached: result.alreadyCached });
      if (a.abort.signal.aborted) return;
      a.finished = "ready";
      send("ready", undefined, true);
      this.#log.info({ model: name, assignmentId, path: result.path }, `now serving ${name}`);
    } catch (err) {
      if (a.abort.signal.aborted) {
        this.#log.info({ model: name, assignmentId }, "the pull was stopped (replaced or shutting down)");
        return;
      }
      a.finished = "failed";
      const reason = err instanceof XimError && err.hint ? `${messageOf(err)} (${err.hint})` : messageOf(err);
      this.#log.error(
        { model: name, assignmentId, code: err instanceof XimError ? err.code : undefined },
        `the assigned model could not be served; the current engine keeps serving: ${reason}`,
      );
      send("failed", reason, true);
    }
  }
}
