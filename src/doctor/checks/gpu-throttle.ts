/**
 * @module gpu-throttle: GPUs whose clocks the hardware or the driver is
 * holding down for heat or power (`nvidia-smi`'s clock throttle reasons,
 * called "clocks event reasons" since driver 535). A throttled GPU still
 * serves, slower: a running node reports `gpu_throttled` (degraded) with the
 * reason and its fix. The power cap (`sw_power_cap`) is left out: a GPU at
 * full load sits at its power limit by design. Idle, application clocks and
 * sync boost are not problems either.
 */
import { runTool } from "../../hardware/run-tool.ts";
import { type Check, type CheckOutcome, ok, raisesOn, skipped, warn } from "../check.ts";
import { GPU_TOOL_TIMEOUT_MS } from "../gpu-probe.ts";

/** The reasons that mean a problem, in the query's column order, with what each means and fixes. */
const REASONS = [
  {
    field: "hw_thermal_slowdown",
    what: "HW thermal slowdown (the GPU is too hot; clocks cut by half or more)",
    fix: "Check the cooling: fans and airflow (`nvidia-smi -q -d TEMPERATURE,PERFORMANCE`), the inlet temperature, blanking panels.",
  },
  {
    field: "hw_power_brake_slowdown",
    what: "HW power brake (the power supply asserted the brake; clocks cut by half or more)",
    fix: "Check the chassis power: a failed or missing PSU, or a power cap in the BMC (its event log: `ipmitool sel list`).",
  },
  {
    field: "sw_thermal_slowdown",
    what: "SW thermal slowdown (the GPU is above its maximum operating temperature)",
    fix: "Check the cooling: fans and airflow (`nvidia-smi -q -d TEMPERATURE,PERFORMANCE`), the inlet temperature.",
  },
  {
    field: "hw_slowdown",
    what: "HW slowdown (clocks cut by half or more)",
    fix: "If it persists, look for Xid errors (`sudo dmesg | grep -i xid`) and in the BMC's event log, and run `dcgmi diag -r 3`.",
  },
] as const;

/**
 * The query. The `clocks_throttle_reasons.*` names: drivers before 535 know
 * only these, and later ones (590 captured) still take them beside the new
 * `clocks_event_reasons.*` names.
 */
export const THROTTLE_QUERY_ARGS = [
  `--query-gpu=index,${REASONS.map((r) => `clocks_throttle_reasons.${r.field}`).join(",")}`,
  "--format=csv,noheader",
];

/** The throttling seen on one GPU: its active reasons. */
interface GpuThrottle {
  index: string;
  active: (typeof REASONS)[number][];
}

/** Parses `0, Not Active, Active, ...` rows; "[N/A]" and "[Not Supported]" read as not active. */
export function parseThrottleCsv(text: string): GpuThrottle[] {
  const rows: GpuThrottle[] = [];
  for (const line of text.split("\n")) {
    const cells = line.split(",").map((c) => c.trim());
    if (cells.length !== REASONS.length + 1 || !/^\d{1,3}$/.test(cells[0])) continue;
    rows.push({ index: cells[0], active: REASONS.filter((_, i) => cells[i + 1] === "Active") });
  }
  return rows;
}

export function throttleOutcome(gpus: readonly GpuThrottle[]): CheckOutcome {
  if (gpus.length === 0) return skipped("nvidia-smi reported no clock throttle reasons");
  const throttled = gpus.filter((g) => g.active.length > 0);
  if (throttled.length === 0) return ok(`no thermal or power slowdown on ${gpus.length} GPU(s)`);
  // The most specific reason explains it: hw_slowdown is also set when a thermal or power-brake one is.
  const named = throttled.map((g) => ({
    index: g.index,
    reasons: g.active.filter((r) => r.field !== "hw_slowdown" || g.active.length === 1),
  }));
  const evidence = named.map((g) => `GPU ${g.index}: ${g.reasons.map((r) => r.what).join(", ")}`).join("; ");
  const fixes = [...new Set(named.flatMap((g) => g.reasons.map((r) => r.fix)))];
  return warn(`clocks throttled: ${evidence}`, fixes.join(" "));
}

export const gpuThrottle: Check = {
  id: "gpu-throttle",
  group: "gpu",
  title: "GPU clocks not throttled for heat or power",
  // One small query: every 30 s notices sustained throttling without flooding logs with short spikes.
  watch: raisesOn("gpu_throttled", "degraded", 30_000, ["warn"]),
  async run(ctx, signal) {
    const r = await runTool("nvidia-smi", THROTTLE_QUERY_ARGS, {
      env: ctx.env,
      timeoutMs: GPU_TOOL_TIMEOUT_MS,
      signal,
      maxBytes: 64 * 1024,
    });
    if (r.kind === "missing") return skipped("nvidia-smi is not on PATH");
    if (r.kind !== "ok")
      return skipped(`nvidia-smi does not answer the throttle query (${r.reason}; see gpu-driver)`);
    return throttleOutcome(parseThrottleCsv(r.stdout));
  },
};
