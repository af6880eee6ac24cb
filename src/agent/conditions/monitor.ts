/**
 * @module The node's conditions while it runs. The doctor's watched checks
 * (a `watch` in src/doctor/check.ts) run on their own schedules through the
 * doctor's runner (its timeouts, its exception handling); other parts (the
 * engine's watcher, engine-conditions.ts) set conditions of their own. Each
 * source owns its conditions: a source that finds its problem gone clears
 * it. A raise and a clear are each logged once, and every change calls
 * `onChange` (the node then tells the router at once). Clock and sleep are
 * injected so tests drive the schedule.
 */
import { sleep as realSleep, type Sleep } from "../../core/backoff.ts";
import { guarded } from "../../core/guard.ts";
import type { Logger } from "../../core/log.ts";
import { safeText } from "../../core/terminal-text.ts";
import { ALL_CHECKS } from "../../doctor/all-checks.ts";
import type { Check, CheckWatch, ConditionFinding } from "../../doctor/check.ts";
import type { DoctorOptions } from "../../doctor/context.ts";
import { runChecks } from "../../doctor/run-checks.ts";
import { CONDITION_SEVERITIES, type NodeCondition } from "../../protocol/conditions.ts";

export type WatchedCheck = Check & { watch: CheckWatch };

/** The checks of the doctor's registry that a running node watches. */
export function watchedChecks(checks: readonly Check[] = ALL_CHECKS): WatchedCheck[] {
  return checks.filter((c): c is WatchedCheck => c.watch !== undefined);
}

export interface ConditionMonitorOptions {
  /** What the checks look at (the node's configuration and environment). */
  doctor: DoctorOptions;
  logger: Logger;
  /** Default: every watched check of the doctor's registry. */
  checks?: readonly WatchedCheck[];
  /** Told each time the set of conditions changes. */
  onChange?: (conditions: NodeCondition[]) => void;
  now?: () => number;
  sleep?: Sleep;
}

/** How a condition is logged and sent: peer text (nvidia-smi's output) made printable and bounded. */
function conditionOf(finding: ConditionFinding, since: number): NodeCondition {
  return {
    condition: finding.condition,
    severity: finding.severity,
    since,
    message: safeText(finding.message, { maxLength: 1000 }),
    fix: safeText(finding.fix, { maxLength: 1000 }),
  };
}

const rank = (c: NodeCondition) => CONDITION_SEVERITIES.indexOf(c.severity);

export class ConditionMonitor {
  readonly #o: ConditionMonitorOptions;
  readonly #log: Logger;
  readonly #checks: readonly WatchedCheck[];
  readonly #now: () => number;
  readonly #sleep: Sleep;
  /** Raised conditions by source ("check:gpu-driver", "engine"). */
  readonly #bySource = new Map<string, NodeCondition>();
  /** When each check runs next. */
  readonly #due = new Map<string, number>();
  #stop = new AbortController();
  #loop: Promise<void> | undefined;

  constructor(options: ConditionMonitorOptions) {
    this.#o = options;
    this.#log = options.logger.child({ component: "conditions" });
    this.#checks = options.checks ?? watchedChecks();
    this.#now = options.now ?? Date.now;
    this.#sleep = options.sleep ?? realSleep;
  }

  /** The conditions now: one per name (the worst severity, the earliest since when sources agree). */
  current(): NodeCondition[] {
    const byName = new Map<string, NodeCondition>();
    for (const c of this.#bySource.values()) {
      const seen = byName.get(c.condition);
      if (!seen || rank(c) > rank(seen) || (rank(c) === rank(seen) && c.since < seen.since)) {
        byName.set(c.condition, c);
      }
    }
    return [...byName.values()];
  }

  /** Runs every watched check once (the start-up checks), then keeps watching until stop(). */
  async start(): Promise<NodeCondition[]> {
    if (this.#loop) return this.current();
    this.#stop = new AbortController();
    await this.checkNow();
    if (this.#checks.length === 0) return this.current();
    const signal = this.#stop.signal;
    this.#loop = this.#watch(signal).catch((err: unknown) => {
      if (!signal.aborted)
        this.#log.error({ err }, "watching the node's conditions stopped by an internal error");
    });
    return this.current();
  }

  async stop(): Promise<void> {
    this.#stop.abort();
    await this.#loop;
    this.#loop = undefined;
  }

  /** Runs the given watched checks (default all) now and applies their findings. */
  async checkNow(ids?: readonly string[]): Promise<void> {
    const checks = ids ? this.#checks.filter((c) => ids.includes(c.id)) : this.#checks;
    if (checks.length === 0) return;
    const report = await runChecks(checks, this.#o.doctor);
    const after = this.#now();
    for (const [i, check] of checks.entries()) {
      this.#due.set(check.id, after + check.watch.everyMs);
      this.set(`check:${check.id}`, check.watch.condition(report.checks[i]));
    }
  }

  /** Raise (a finding) or clear (undefined) the condition a source owns; logs and reports only changes. */
  set(source: string, finding: ConditionFinding | undefined): void {
    const held = this.#bySource.get(source);
    if (!finding) {
      if (!held) return;
      this.#bySource.delete(source);
      this.#log.info(
        { condition: held.condition, source, raisedAt: held.since },
        `condition cleared: ${held.condition}`,
      );
      this.#changed();
      return;
    }
    const same = held?.condition === finding.condition && held.severity === finding.severity;
    // A new message for the same condition is kept quietly: the router needs the change, the log does not.
    const next = conditionOf(finding, same && held ? held.since : this.#now());
    if (same && held.message === next.message && held.fix === next.fix) return;
    this.#bySource.set(source, next);
    if (!same) {
      if (held && held.condition !== next.condition) {
        this.#log.info({ condition: held.condition, source }, `condition cleared: ${held.condition}`);
      }
      const level = next.severity === "info" ? "info" : "warn";
      this.#log[level](
        { condition: next.condition, severity: next.severity, source, fix: next.fix },
        `condition raised: ${next.condition}: ${next.message}`,
      );
    }
    this.#changed();
  }

  #changed(): void {
    const report = this.#o.onChange;
    if (report) guarded(this.#log, "reporting a condition change", report)(this.current());
  }

  async #watch(signal: AbortSignal): Promise<void> {
    while (!signal.aborted) {
      const next = Math.min(...this.#checks.map((c) => this.#due.get(c.id) ?? 0));
      await this.#sleep(Math.max(0, next - this.#now()), signal);
      if (signal.aborted) return;
      const now = this.#now();
      await this.checkNow(this.#checks.filter((c) => (this.#due.get(c.id) ?? 0) <= now).map((c) => c.id));
    }
  }
}
