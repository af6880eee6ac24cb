/**
 * @module How a plan prints: the exact command line and environment, a
 * table of decisions with their reasons, the files to be written and the
 * warnings (`xim plan`, `xim run --dry-run`); and the JSON shape for
 * scripts, secrets masked.
 */

import { SHOWN_PORT } from "../engine/vllm-args.ts";
import type { Plan } from "../planner/plan-types.ts";
import { formatTable } from "./output.ts";

/** Quote one word for a POSIX shell when it needs it (JSON configs do). */
export function shellQuote(word: string): string {
  if (/^[A-Za-z0-9_./:=,+@%-]+$/.test(word)) return word;
  return `'${word.replaceAll("'", `'\\''`)}'`;
}

/** The plan as JSON-ready data: secret file contents stay masked. */
export function planToJson(plan: Plan): unknown {
  return {
    ...plan,
    files: plan.files.map((f) => ({ path: f.path, purpose: f.purpose, content: f.content })),
  };
}

/** The command as it will run (engine/vllm-args.ts shownVllmCommand): argv and the environment xim sets. */
export interface ShownCommand {
  file: string;
  args: string[];
  env: Record<string, string>;
}

/**
 * `command`: the very argv and environment the engine is started with
 * (xim plan and xim run --dry-run always pass it); without it, only the
 * planner's own flags after `vllm serve MODEL`.
 */
export function formatPlan(
  plan: Plan,
  options: { vllmPath?: string; model?: string; command?: ShownCommand } = {},
): string {
  const out: string[] = [];
  const line = options.command
    ? [options.command.file, ...options.command.args]
    : [options.vllmPath ?? "vllm", "serve", options.model ?? "MODEL_PATH", ...plan.args];
  out.push(
    `Engine (${plan.accelerator === "cpu" ? "CPU" : plan.accelerator === "amd" ? "AMD ROCm" : "NVIDIA CUDA"}, auto-configuration ${plan.auto ? "on" : "off"}):`,
  );
  out.push(`  ${line.map(shellQuote).join(" ")}`);
  if (options.command?.args.includes(SHOWN_PORT))
    out.push(`  (${SHOWN_PORT}: a free loopback port chosen at each start)`);
  out.push("");
  out.push("Environment:");
  const env = Object.entries(options.command?.env ?? plan.env);
  if (env.length === 0) out.push("  (none)");
  for (const [k, v] of env) out.push(`  ${k}=${shellQuote(v)}`);
  out.push("");
  out.push("Decisions:");
  const rows = plan.decisions.map((d) => [
    `  ${d.setting}`,
    d.value.length > 60 ? `${d.value.slice(0, 57)}...` : d.value,
    d.source,
    d.reason,
  ]);
  out.push(formatTable(["  SETTING", "VALUE", "SOURCE", "REASON"], rows).trimEnd());
  out.push("");
  out.push(`Max concurrent requests: ${plan.maxConcurrent ?? "derived from the engine's capacity"}`);
  if (plan.estimate) {
    const e = plan.estimate;
    const g = (n: number) => `${(n / 1024 ** 3).toFixed(1)} GiB`;
    out.push(
      `Memory per GPU: budget ${g(e.budgetBytesPerGpu)}, weights ${g(e.weightBytesPerGpu)}, overhead ${g(e.overheadBytesPerGpu)}, KV cache ${g(Math.max(0, e.kvBudgetBytesPerGpu))} = ${e.kvTokens} tokens at ${e.kvBytesPerTokenPerGpu} bytes each`,
    );
  }
  for (const f of plan.files) {
    out.push("");
    out.push(`File ${f.path} (${f.purpose}):`);
    for (const line of f.content.trimEnd().split("\n")) out.push(`  ${line}`);
  }
  if (plan.warnings.length) {
    out.push("");
    for (const w of plan.warnings) out.push(`warning: ${w}`);
  }
  return `${out.join("\n")}\n`;
}
