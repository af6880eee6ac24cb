/**
 * @module The contract of a doctor check. A check is data (a kebab-case id,
 * the area it belongs to, a title) plus a `run` that looks at the machine and
 * returns a status with one line of evidence and, for every warn or fail, the
 * exact command or setting that fixes it. Checks never throw: run-checks.ts
 * turns an exception or a timeout into a result, so one broken probe cannot
 * hide the others.
 */
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

export interface Check {
  id: string;
  group: CheckGroup;
  title: string;
  /** Own time limit; the runner also stops every check at the run's overall deadline. */
  timeoutMs?: number;
  run: (ctx: DoctorContext, signal: AbortSignal) => Promise<CheckOutcome>;
}

export const ok = (evidence: string): CheckOutcome => ({ status: "ok", evidence });
export const skipped = (evidence: string): CheckOutcome => ({ status: "skipped", evidence });
export const warn = (evidence: string, fix: string): CheckOutcome => ({ status: "warn", evidence, fix });
export const fail = (evidence: string, fix: string): CheckOutcome => ({ status: "fail", evidence, fix });
