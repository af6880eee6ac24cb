/**
 * @module cpu-memory: system RAM against the Xerotier documentation's table for CPU inference
 * (sub-1B ~32 GB, 3-4B ~64 GB, 7-8B ~96 GB; 64 GB minimum), for the
 * configured model when its weights are on disk. Informational on a GPU node.
 */
import { type Check, fail, ok, skipped, warn } from "../check.ts";
import { detectedHardware } from "../gpu-probe.ts";
import { GB, gb, MIN_CPU_RAM_GB, modelSize, requiredRamGb } from "../model-size.ts";

export const cpuMemory: Check = {
  id: "cpu-memory",
  group: "cpu",
  title: "RAM for CPU inference",
  async run(ctx) {
    const hw = await detectedHardware(ctx);
    const total = hw.memory.totalBytes;
    if (total === null) return skipped(`cannot read ${ctx.procRoot}/meminfo`);
    const avail = hw.memory.availableBytes;
    const have = `${gb(total)} RAM${avail !== null ? ` (${gb(avail)} available)` : ""}`;
    if (hw.accelerator !== "cpu") return ok(`${have}; serving from the GPU`);
    const model = await modelSize(ctx.config.initialModelPath);
    if (model) {
      const need = requiredRamGb(model.paramsBillions);
      const what = `${have}; the model at ${model.path} has ${gb(model.weightBytes)} of weights (~${model.paramsBillions.toFixed(1)}B parameters), for which the Xerotier documentation's table asks ~${need} GB`;
      if (total < need * GB) {
        return fail(
          what,
          `Use a machine with at least ${need} GB RAM or a smaller model; if it still runs out, lower the KV cache: XEROTIER_AGENT_VLLM_ENV="VLLM_CPU_KVCACHE_SPACE=<GB>".`,
        );
      }
      return ok(what);
    }
    if (total < MIN_CPU_RAM_GB * GB) {
      return warn(
        `${have}, below the Xerotier documentation's ${MIN_CPU_RAM_GB} GB minimum for CPU inference (sub-1B models need ~32 GB, 3-4B ~64 GB, 7-8B ~96 GB)`,
        `Serve only small models here (under 1B parameters with 32 GB) or add RAM; set XEROTIER_AGENT_INITIAL_MODEL_PATH so doctor can check the model's own need.`,
      );
    }
    return ok(`${have}; no model configured (XEROTIER_AGENT_INITIAL_MODEL_PATH) to size against`);
  },
};
