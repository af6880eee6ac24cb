/**
 * @module `xim doctor`: runs the checks of src/doctor and prints them grouped
 * by area (symbols, colour on a terminal unless NO_COLOR), each warning and
 * failure with its fix, then a summary; or, with --json, the same report
 * for scripts. Exit 0 when nothing failed, 1 when a check failed.
 */
import { type SettingKey, settings } from "../core/config/schema.ts";
import { ExitCode, UsageError } from "../core/errors.ts";
import { safeText } from "../core/terminal-text.ts";
import { ALL_CHECKS } from "../doctor/all-checks.ts";
import { type CheckResult, type CheckStatus, GROUP_TITLES } from "../doctor/check.ts";
import { configForDoctor, DOCTOR_SCHEMA_VERSION, runDoctor } from "../doctor/doctor.ts";
import { byGroup, DEFAULT_RUN_TIMEOUT_MS, type DoctorReport } from "../doctor/run-checks.ts";
import { defineCommand } from "./command.ts";
import type { Io } from "./io.ts";
import { switchOption, valueOption } from "./options.ts";

const SYMBOL: Record<CheckStatus, string> = { ok: "✓", warn: "!", fail: "✗", skipped: "-" };
const COLOUR: Record<CheckStatus, string> = { ok: "32", warn: "33", fail: "31", skipped: "2" };

/** Colour only on a terminal, and never when NO_COLOR is set to anything non-empty (no-color.org). */
export function useColour(io: Io): boolean {
  return io.stdoutIsTty && !io.env.NO_COLOR;
}

function paint(on: boolean, code: string, text: string): string {
  return on ? `\u001b[${code}m${text}\u001b[0m` : text;
}

function plural(n: number, word: string): string {
  return `${n} ${word}${n === 1 ? "" : "s"}`;
}

export function summaryLine(report: DoctorReport): string {
  const { ok, warn, fail, skipped } = report.summary;
  const head =
    fail === 0 && warn === 0 ? "No problems found" : `${plural(fail, "problem")}, ${plural(warn, "warning")}`;
  return `${head} (${ok} ok, ${skipped} skipped) in ${(report.durationMs / 1000).toFixed(1)} s`;
}

export function formatReport(report: DoctorReport, colour: boolean): string {
  const lines: string[] = [];
  for (const [group, results] of byGroup(report.checks)) {
    lines.push(paint(colour, "1", GROUP_TITLES[group as CheckResult["group"]]));
    for (const r of results) {
      const sym = paint(colour, COLOUR[r.status], SYMBOL[r.status]);
      if (r.status === "skipped") {
        lines.push(
          paint(colour, "2", `  ${SYMBOL.skipped} ${r.title} [${r.id}]: skipped, ${safeText(r.evidence)}`),
        );
        continue;
      }
      // Evidence quotes routers, engines and tools: one line each, no control characters.
      lines.push(`  ${sym} ${r.title} [${r.id}]`);
      lines.push(`      ${safeText(r.evidence)}`);
      if (r.fix) lines.push(`      ${paint(colour, COLOUR[r.status], "fix:")} ${safeText(r.fix)}`);
    }
    lines.push("");
  }
  const summary = summaryLine(report);
  lines.push(
    report.summary.fail > 0
      ? paint(colour, "31;1", summary)
      : report.summary.warn > 0
        ? paint(colour, "33;1", summary)
        : paint(colour, "32;1", summary),
  );
  return `${lines.join("\n")}\n`;
}

/** The --json document: its fields are documented in docs/doctor.md. */
export function reportJson(report: DoctorReport) {
  return {
    schemaVersion: DOCTOR_SCHEMA_VERSION,
    ok: report.summary.fail === 0,
    summary: report.summary,
    durationMs: report.durationMs,
    checks: report.checks.map((c) => ({
      id: c.id,
      group: c.group,
      title: c.title,
      status: c.status,
      evidence: c.evidence,
      fix: c.fix ?? null,
      durationMs: c.durationMs,
    })),
  };
}

function parseSeconds(value: string): number {
  const n = Number(value);
  if (!Number.isFinite(n) || n <= 0 || n > 3600) {
    throw new UsageError(`--timeout ${value}: expected seconds, a number greater than 0 and at most 3600`);
  }
  return n;
}

function collect(value: string, previous: string[] | undefined): string[] {
  return [...(previous ?? []), ...value.split(",").filter(Boolean)];
}

/** Test hooks: point the checks at a fake /proc, /sys, /dev or /data/xerotier, or say whether this is a container. */
function rootsFromEnv(env: Io["env"]) {
  const container = env.XIM_IN_CONTAINER;
  return {
    procRoot: env.XIM_PROC_ROOT || undefined,
    sysRoot: env.XIM_SYS_ROOT || undefined,
    devRoot: env.XIM_DEV_ROOT || undefined,
    dataDir: env.XIM_DATA_DIR || undefined,
    inContainer: container === "1" ? true : container === "0" ? false : undefined,
  };
}

export const doctorCommand = defineCommand({
  name: "doctor",
  summary: "Check this machine and explain what is wrong",
  description: `Runs every check in parallel (GPU driver and container toolkit, CPU, permissions,
kernel socket buffers, disk, configuration, enrollment and router, LMCache, engine)
and prints each with its evidence and, for a warning or failure, the command or
setting that fixes it. Checks that need root or a GPU say "skipped" with the
reason. Check ids and the --json schema: docs/doctor.md.`,
  settings: Object.keys(settings) as SettingKey[],
  commonSettings: ["configDir", "routerUrl", "initialModelPath", "modelCacheDir", "lmcacheRedisUrl"],
  options: {
    json: switchOption("--json", "print the report as JSON (schema in docs/doctor.md)"),
    check: valueOption(
      "--check <id>",
      "run only this check or group (repeatable, or comma-separated); see --list-checks",
      collect,
    ),
    timeout: valueOption(
      "--timeout <seconds>",
      `time limit of the whole run (default ${DEFAULT_RUN_TIMEOUT_MS / 1000}); each check also has its own`,
      parseSeconds,
    ),
    listChecks: switchOption("--list-checks", "list the check ids and exit"),
  },
  examples: [
    "xim doctor",
    "xim doctor --json | jq '.checks[] | select(.status == \"fail\")'",
    "xim doctor --check socket-buffers --check gpu",
    "xim doctor --check router-reachable --timeout 30",
  ],
  async run(ctx) {
    const io = ctx.io;
    if (ctx.options.listChecks) {
      if (ctx.options.json) {
        io.stdout(
          `${JSON.stringify({ checks: ALL_CHECKS.map((c) => ({ id: c.id, group: c.group, title: c.title })) }, null, 2)}\n`,
        );
      } else {
        for (const c of ALL_CHECKS) io.stdout(`${c.id.padEnd(24)} ${c.group.padEnd(14)} ${c.title}\n`);
      }
      return ExitCode.ok;
    }
    const { loaded, problems } = configForDoctor(ctx.config, io.env, io.cwd);
    const report = await runDoctor({
      loaded,
      configProblems: problems,
      env: io.env,
      selectors: ctx.options.check ?? [],
      timeoutMs: ctx.options.timeout !== undefined ? ctx.options.timeout * 1000 : DEFAULT_RUN_TIMEOUT_MS,
      ...rootsFromEnv(io.env),
    });
    if (ctx.options.json) io.stdout(`${JSON.stringify(reportJson(report), null, 2)}\n`);
    else io.stdout(formatReport(report, useColour(io)));
    return report.summary.fail > 0 ? ExitCode.failure : ExitCode.ok;
  },
});
