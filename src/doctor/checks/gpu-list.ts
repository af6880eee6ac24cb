/**
 * @module gpu-list: the GPUs the engine will see (the planner's detection,
 * honouring CUDA_VISIBLE_DEVICES and MIG slices) with their memory, and
 * whether each has the free memory vLLM will claim
 * (XEROTIER_AGENT_GPU_MEMORY_UTILIZATION of the total): vLLM refuses to
 * start when other processes hold too much of it.
 */
import { type Check, ok, skipped, warn } from "../check.ts";
import { detectedHardware, probeNvidia } from "../gpu-probe.ts";
import { findEngineProcesses } from "../proc.ts";

export const gpuList: Check = {
  id: "gpu-list",
  group: "gpu",
  title: "GPUs and their memory",
  async run(ctx) {
    const hw = await detectedHardware(ctx);
    if (hw.gpus.length === 0) {
      const nv = await probeNvidia(ctx);
      return skipped(
        nv.state === "missing"
          ? "no GPU driver answers (see gpu-driver)"
          : "nvidia-smi lists no usable GPU (see gpu-driver)",
      );
    }
    const list = hw.gpus
      .map((g) => {
        const free = g.memoryFreeMiB !== null ? `, ${g.memoryFreeMiB} free` : "";
        const slice = g.migSlice ? ` MIG ${g.migSlice.profile}` : "";
        const cc = g.computeCapability ? `, cc ${g.computeCapability}` : "";
        return `GPU ${g.index} ${g.name}${slice} ${g.memoryTotalMiB} MiB${free}${cc}`;
      })
      .join("; ");
    const util = ctx.config.gpuMemoryUtilization;
    const short = hw.gpus.filter(
      (g) => !g.migSlice && g.memoryFreeMiB !== null && g.memoryFreeMiB < g.memoryTotalMiB * util,
    );
    if (short.length > 0 && (await findEngineProcesses(ctx.procRoot, ctx.config.vllmPath)).length === 0) {
      const worst = Math.min(...short.map((g) => (g.memoryFreeMiB ?? 0) / g.memoryTotalMiB));
      return warn(
        `${list}; GPU ${short.map((g) => g.index).join(", ")} has less free memory than the ${util} of it vLLM will claim, and no vLLM is running`,
        `Stop the other processes on the GPU (\`nvidia-smi\` lists them) or set XEROTIER_AGENT_GPU_MEMORY_UTILIZATION=${Math.max(0.05, Math.floor(worst * 100 - 2) / 100).toFixed(2)}.`,
      );
    }
    return ok(list);
  },
};
