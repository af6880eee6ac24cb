/**
 * @module Runs doctor checks in parallel and collects one result per check,
 * in the order they were given. Each check gets its own time limit and the
 * whole run an overall deadline; a check that throws, hangs or outlives the
 * deadline still yields a result (fail for an exception or its own timeout,
 * since a probe that hangs is itself the symptom; warn for the overall
 * deadline, with the command that runs it alone with more time).
 */
import { messageOf } from "../core/errors.ts";
import { formatSeconds } from "../core/time-text.ts";
import { CHECK_GROUPS, type Check, type CheckOutcome, type CheckResult, type CheckStatus } from "./check.ts";
import { createContext, type DoctorOptions } from "./context.ts";

export const DEFAULT_CHECK_TIMEOUT_MS = 5000;
export const DEFAULT_RUN_TIMEOUT_MS = 10000;

export interface RunOptions extends DoctorOptions {
  /** Overall deadline of the run. */
  timeoutMs?: number;
  /** Clock for durations; injectable for tests. */
  now?: () => number;
}

export interface DoctorSummary {
  ok: number;
  warn: number;
  fail: number;
  skipped: number;
}

export interface DoctorReport {
  checks: CheckResult[];
  summary: DoctorSummary;
  durationMs: number;
}

export async function runChecks(checks: readonly Check[], options: RunOptions): Promise<DoctorReport> {
  const now = options.now ?? (() => performance.now());
  const runTimeout = options.timeoutMs ?? DEFAULT_RUN_TIMEOUT_MS;
  const started = now();
  const controller = new AbortController();
  const ctx = createContext(options, controller.signal);
  let deadlineTimer: NodeJS.Timeout | undefined;
  const deadline = new Promise<"deadline">((resolve) => {
    deadlineTimer = setTimeout(() => resolve("deadline"), runTimeout);
  });

  const one = async (check: Check): Promise<CheckResult> => {
    const t0 = now();
    const own = new AbortController();
    const onRunAbort = () => own.abort();
    controller.signal.addEventListener("abort", onRunAbort, { once: true });
    const limit = check.timeoutMs ?? DEFAULT_CHECK_TIMEOUT_MS;
    let timer: NodeJS.Timeout | undefined;
    const timedOut = new Promise<"timeout">((resolve) => {
      timer = setTimeout(() => resolve("timeout"), limit);
    });
    let outcome: CheckOutcome;
    try {
      const run = check.run(ctx, own.signal).then(
        (o) => o,
        (err: unknown): CheckOutcome => ({
          status: "fail",
          evidence: `the check itself failed: ${messageOf(err)}`,
          fix: `This is a bug in xim doctor; run 'xim doctor --check ${check.id} --json' and report the output.`,
        }),
      );
      const first = await Promise.race([run, timedOut, deadline]);
      if (first === "timeout") {
        outcome = {
          status: "fail",
          evidence: `did not finish within ${formatSeconds(limit)} (something it probes is hanging)`,
          fix: `Run 'xim doctor --check ${check.id}' again; if it hangs again, the probed service or driver is stuck (see the check's entry in docs/doctor.md).`,
        };
      } else if (first === "deadline") {
        outcome = {
          status: "warn",
          evidence: `not finished when the run's overall --timeout (${formatSeconds(runTimeout)}) expired`,
          fix: `xim doctor --check ${check.id} --timeout 60`,
        };
      } else {
        outcome = normalise(first, check.id);
      }
    } finally {
      clearTimeout(timer);
      own.abort();
      controller.signal.removeEventListener("abort", onRunAbort);
    }
    return {
      id: check.id,
      group: check.group,
      title: check.title,
      ...outcome,
      durationMs: Math.round(now() - t0),
    };
  };

  try {
    const checksOut = await Promise.all(checks.map(one));
    return { checks: checksOut, summary: summarise(checksOut), durationMs: Math.round(now() - started) };
  } finally {
    clearTimeout(deadlineTimer);
    controller.abort();
  }
}

/** A warn or fail always carries a fix; a check that forgot one is reported as its own bug. */
function normalise(o: CheckOutcome, id: string): CheckOutcome {
  const evidence = o.evidence.replace(/\s*\n\s*/g, "; ").trim();
  if ((o.status === "warn" || o.status === "fail") && !o.fix) {
    return { ...o, evidence, fix: `See the entry for ${id} in docs/doctor.md.` };
  }
  const out: CheckOutcome = { status: o.status, evidence };
  if (o.fix && (o.status === "warn" || o.status === "fail")) out.fix = o.fix;
  return out;
}

export function summarise(results: readonly CheckResult[]): DoctorSummary {
  const s: DoctorSummary = { ok: 0, warn: 0, fail: 0, skipped: 0 };
  for (const r of results) s[r.status as CheckStatus]++;
  return s;
}

/** Results in group order (stable within a group), for the human output. */
export function byGroup(results: readonly CheckResult[]): Array<[string, CheckResult[]]> {
  return CHECK_GROUPS.map((g) => [g, results.filter((r) => r.group === g)] as [string, CheckResult[]]).filter(
    ([, list]) => list.length > 0,
  );
}
