/**
 * @module gpu-memory-health: GPU memory errors that `nvidia-smi -q` reports:
 * a pending row remap (applied only at the next GPU reset), a failed remap
 * (the GPU has run out of spare rows: bad memory), and uncorrectable DRAM
 * ECC errors since the driver loaded (they kill the processes on the GPU).
 */
import { type Check, type CheckOutcome, type CheckWatch, fail, ok, skipped, warn } from "../check.ts";
import { type NvidiaGpuDetails, probeNvidia } from "../gpu-probe.ts";

export function memoryHealthOutcome(details: readonly NvidiaGpuDetails[]): CheckOutcome {
  const name = (d: NvidiaGpuDetails) => `${d.name} (${d.busId})`;
  const failed = details.filter((d) => d.remapFailure === "Yes");
  if (failed.length > 0) {
    return fail(
      `row remapping failed on ${failed.map(name).join(", ")}: the GPU has no spare memory rows left`,
      "Take the GPU out of service and have it replaced (run `dcgmi diag -r 3` or the vendor's field diagnostics first).",
    );
  }
  const pending = details.filter((d) => d.remapPending === "Yes");
  const ecc = details.filter((d) => Number(d.dramUncorrectable) > 0);
  if (pending.length > 0 || ecc.length > 0) {
    const parts = [
      pending.length ? `row remap pending on ${pending.map(name).join(", ")}` : "",
      ecc.length
        ? `uncorrectable DRAM ECC errors on ${ecc.map((d) => `${name(d)}: ${d.dramUncorrectable}`).join(", ")}`
        : "",
    ].filter(Boolean);
    return warn(
      parts.join("; "),
      "Reset the GPU when idle to apply the remap (`sudo nvidia-smi -i <bus id> -r`, or reboot); if uncorrectable errors keep coming, run `dcgmi diag -r 3` and replace the GPU.",
    );
  }
  const known = details.filter((d) => d.remapPending !== undefined || d.dramUncorrectable !== undefined);
  if (known.length === 0)
    return skipped("`nvidia-smi -q` reports no row remapping or ECC counters for these GPUs");
  return ok(
    `no pending or failed row remaps, no uncorrectable DRAM ECC errors (${known.length} GPU${known.length === 1 ? "" : "s"})`,
  );
}

/** A failed remap is bad memory (blocking: results cannot be trusted); a pending one or ECC errors degrade. */
const memoryErrorsWatch: CheckWatch = {
  // Counters change rarely, and `nvidia-smi -q` is the slowest query: once a minute.
  everyMs: 60_000,
  condition: (o) =>
    o.status === "fail" || o.status === "warn"
      ? {
          condition: "gpu_memory_errors",
          severity: o.status === "fail" ? "blocking" : "degraded",
          message: o.evidence,
          fix: o.fix ?? "Run 'xim doctor --check gpu-memory-health'.",
        }
      : undefined,
};

export const gpuMemoryHealth: Check = {
  id: "gpu-memory-health",
  group: "gpu",
  title: "GPU memory health (row remapping, ECC)",
  watch: memoryErrorsWatch,
  async run(ctx) {
    const nv = await probeNvidia(ctx);
    if (nv.state !== "ok") return skipped("no NVIDIA driver answers (see gpu-driver)");
    if (!nv.details) return skipped("`nvidia-smi -q` gave no details");
    return memoryHealthOutcome(nv.details);
  },
};
