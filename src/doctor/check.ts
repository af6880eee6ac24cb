/**
 * @module The contract of a doctor check. A check is data (a kebab-case id,
 * the area it belongs to, a title) plus a `run` that looks at the machine and
 * returns a status with one line of evidence and, for every warn or fail, the
 * exact command or setting that fixes it. Checks never throw: run-checks.ts
 * turns an exception or a timeout into a result, so one broken probe cannot
 * hide the others.
 *
 * The same checks watch a running node: a check with `watch` is also run by
 * `xim run` every `everyMs` (src/agent/conditions/monitor.ts), and its
 * `condition` turns an outcome into the node condition the router is told
 * about (src/protocol/conditions.ts). Only cheap checks that never load the
 * GPU are watched often.
 */
import type { ConditionSeverity } from "../protocol/conditions.ts";
import type { DoctorContext } from "./context.ts";

export type CheckStatus = "ok" | "warn" | "fail" | "skipped";

/** The areas, in the order the human output prints them. */
export const CHECK_GROUPS = [
  "gpu",
  "cpu",
  "permissions",
  "kernel",
  "disk",
  "configuration",
  "enrollment",
  "lmcache",
  "engine",
] as const;
export type CheckGroup = (typeof CHECK_GROUPS)[number];

export const GROUP_TITLES: Record<CheckGroup, string> = {
  gpu: "GPU",
  cpu: "CPU inference",
  permissions: "Permissions",
  kernel: "Kernel",
  disk: "Disk",
  configuration: "Configuration",
  enrollment: "Enrollment",
  lmcache: "LMCache",
  engine: "Engine",
};

/** What a check's `run` returns; the runner adds the identity and the duration. */
export interface CheckOutcome {
  status: CheckStatus;
  /** One line: what was seen (values, paths, versions), or why the check was skipped. */
  evidence: string;
  /** For warn and fail: the command or setting that fixes it. */
  fix?: string;
}

export interface CheckResult extends CheckOutcome {
  id: string;
  group: CheckGroup;
  title: string;
  durationMs: number;
}

/** A condition as a check finds it; the monitor adds `since`. */
export interface ConditionFinding {
  condition: string;
  severity: ConditionSeverity;
  message: string;
  fix: string;
}

/** How a running node uses a check: how often, and which outcome raises which condition. */
export interface CheckWatch {
  /** Interval between runs while serving. */
  everyMs: number;
  /** The condition this outcome means; undefined clears it. */
  condition: (outcome: CheckOutcome) => ConditionFinding | undefined;
}

export interface Check {
  id: string;
  group: CheckGroup;
  title: string;
  /** Own time limit; the runner also stops every check at the run's overall deadline. */
  timeoutMs?: number;
  run: (ctx: DoctorContext, signal: AbortSignal) => Promise<CheckOutcome>;
  /** Set when `xim run` watches this check continuously (and runs it before registering). */
  watch?: CheckWatch;
}

/**
 * The usual mapping: `when` outcomes (fail by default) raise `condition` at
 * `severity`, with the check's evidence as the message and its fix as the fix.
 */
export function raisesOn(
  condition: string,
  severity: ConditionSeverity,
  everyMs: number,
  when: readonly CheckStatus[] = ["fail"],
): CheckWatch {
  return {
    everyMs,
    condition: (o) =>
      when.includes(o.status)
        ? { condition, severity, message: o.evidence, fix: o.fix ?? "Run 'xim doctor' for details." }
        : undefined,
  };
}

export const ok = (evidence: string): CheckOutcome => ({ status: "ok", evidence });
export const skipped = (evidence: string): CheckOutcome => ({ status: "skipped", evidence });
export const warn = (evidence: string, fix: string): CheckOutcome => ({ status: "warn", evidence, fix });
export const fail = (evidence: string, fix: string): CheckOutcome => ({ status: "fail", evidence, fix });
