/**
 * `npm run check:device`: the acceptance check for a machine with a real GPU
 * (it also runs, and passes, on one without: each step that needs a GPU or
 * vLLM is skipped with the reason). It records, in one JSON report:
 *
 * - the machine (kernel, CPU, `nvidia-smi -L`, the xim version);
 * - `xim doctor --json` (every check's status and evidence);
 * - `xim plan --json` for each fixture model in tests/fixtures/models: the
 *   hardware detection and the vLLM command the planner builds for it;
 * - with `--model DIR` and vLLM installed and a GPU present: a real start of
 *   that model under `xim run` and one streamed request through a local
 *   router (scripts/demo.ts --engine vllm).
 *
 *   npm run check:device -- [--model /models/small] [--out docs/device-reports/NAME.json]
 *
 * Exit 0 when every step that ran passed (skips included), 1 otherwise.
 * Keep the report of each GPU machine in docs/device-reports/.
 */
import { spawnSync } from "node:child_process";
import { mkdirSync, readdirSync, writeFileSync } from "node:fs";
import { hostname, release } from "node:os";
import { dirname, join } from "node:path";
import { parseArgs } from "node:util";

const ROOT = join(import.meta.dirname, "..");
const MAIN = join(ROOT, "main.ts");
const FIXTURE_MODELS = join(ROOT, "tests/fixtures/models");

const { values: cli } = parseArgs({
  options: { model: { type: "string" }, out: { type: "string" } },
});

type StepStatus = "ok" | "failed" | "skipped";
interface Step {
  name: string;
  status: StepStatus;
  detail: string;
  data?: unknown;
}

function run(command: string, args: string[], timeoutMs: number, env: NodeJS.ProcessEnv = process.env) {
  const r = spawnSync(command, args, {
    cwd: ROOT,
    encoding: "utf8",
    timeout: timeoutMs,
    env,
    maxBuffer: 64 << 20,
  });
  return { code: r.status, stdout: r.stdout ?? "", stderr: r.stderr ?? "", error: r.error?.message };
}

function xim(args: string[], timeoutMs = 120_000) {
  return run(process.execPath, [MAIN, ...args], timeoutMs);
}

function parseJson(text: string): unknown {
  try {
    return JSON.parse(text);
  } catch {
    return undefined;
  }
}

const steps: Step[] = [];
function record(step: Step): void {
  steps.push(step);
  process.stderr.write(`${step.status.padEnd(7)} ${step.name}: ${step.detail}\n`);
}

// The machine.
const smi = run("nvidia-smi", ["-L"], 30_000);
const gpus = smi.code === 0 ? smi.stdout.trim().split("\n").filter(Boolean) : [];
const machine = {
  hostname: hostname(),
  kernel: release(),
  node: process.version,
  xim: xim(["--version"]).stdout.trim(),
  nvidiaSmi:
    smi.code === 0
      ? gpus
      : `not available (${smi.error ?? smi.stderr.trim().split("\n")[0] ?? `exit ${smi.code}`})`,
};
record({
  name: "gpu",
  status: gpus.length > 0 ? "ok" : "skipped",
  detail:
    gpus.length > 0
      ? `${gpus.length} GPU(s): ${gpus[0]}`
      : "no GPU on this machine (nvidia-smi -L did not list one)",
});

// xim doctor: exit 1 means a check failed, which the report shows; only a crash or a usage error fails the step.
const doctor = xim(["doctor", "--json"]);
const report = parseJson(doctor.stdout) as
  | { summary?: Record<string, number>; checks?: { id: string; status: string }[] }
  | undefined;
record({
  name: "doctor",
  status: report?.summary && (doctor.code === 0 || doctor.code === 1) ? "ok" : "failed",
  detail: report?.summary
    ? `${Object.entries(report.summary)
        .map(([k, v]) => `${v} ${k}`)
        .join(", ")}; failing: ${
        report.checks
          ?.filter((c) => c.status === "fail")
          .map((c) => c.id)
          .join(", ") || "none"
      }`
    : `no JSON report (exit ${doctor.code}): ${doctor.stderr.slice(0, 400)}`,
  data: report,
});

// Hardware detection and a plan for every fixture model.
const plans: unknown[] = [];
let planFailures = 0;
let hardware: unknown;
for (const name of readdirSync(FIXTURE_MODELS, { withFileTypes: true })
  .filter((d) => d.isDirectory())
  .map((d) => d.name)) {
  const r = xim(["plan", "--json", "--model", join(FIXTURE_MODELS, name)]);
  const plan = parseJson(r.stdout) as { hardware?: unknown; command?: unknown; errors?: unknown } | undefined;
  if (!plan) planFailures++;
  hardware ??= plan?.hardware;
  plans.push({ model: name, exitCode: r.code, plan: plan ?? { stderr: r.stderr.slice(0, 2000) } });
}
record({
  name: "plans",
  status: planFailures === 0 ? "ok" : "failed",
  detail: `${plans.length - planFailures} of ${plans.length} fixture models planned`,
  data: { hardware, plans },
});

// A real vLLM start with one streamed request through a local router.
const vllm = run("vllm", ["--version"], 60_000);
const skipEngine = !cli.model
  ? "no --model DIR given (a local model folder; this machine reaches no hub)"
  : gpus.length === 0
    ? "no GPU"
    : vllm.code !== 0
      ? `vLLM is not installed (vllm --version: ${vllm.error ?? `exit ${vllm.code}`})`
      : undefined;
if (skipEngine) {
  record({ name: "engine", status: "skipped", detail: skipEngine });
} else {
  const demo = run(
    process.execPath,
    [join(ROOT, "scripts/demo.ts"), "--engine", "vllm", "--model", cli.model as string],
    590_000,
  );
  const summary = demo.stdout.split("\n").find((l) => / tokens \(usage says/.test(l));
  record({
    name: "engine",
    status: demo.code === 0 ? "ok" : "failed",
    detail:
      demo.code === 0
        ? `vLLM ${vllm.stdout.trim()}: ${summary?.replace(/^==> /, "") ?? "streamed"}`
        : `exit ${demo.code}`,
    data: {
      vllmVersion: vllm.stdout.trim(),
      stdout: demo.stdout.slice(-4000),
      stderr: demo.stderr.slice(-8000),
    },
  });
}

const failed = steps.filter((s) => s.status === "failed");
const out =
  cli.out ?? join(ROOT, "docs/device-reports", `${new Date().toISOString().slice(0, 10)}-${hostname()}.json`);
mkdirSync(dirname(out), { recursive: true });
writeFileSync(
  out,
  `${JSON.stringify({ schemaVersion: 1, at: new Date().toISOString(), machine, steps }, null, 2)}\n`,
);
process.stderr.write(
  `report: ${out}\n${failed.length === 0 ? "check:device passed" : `check:device failed: ${failed.map((s) => s.name).join(", ")}`}\n`,
);
process.exitCode = failed.length === 0 ? 0 : 1;
