/**
 * @module The GPU half of the plan: gpu_memory_utilization against the free
 * memory, the quantization that lets the model fit (forced, detected in the
 * checkpoint, or chosen on the fly), and the context length and flags that
 * follow from what is left for the KV cache.
 */
import { gib, type PlanBuilder } from "./builder.ts";
import { planLmcache } from "./lmcache.ts";
import { planMaxModelLen } from "./max-model-len.ts";
import { estimateGpuMemory, minimumContext } from "./memory.ts";
import type { QuantizationInfo } from "./model-info.ts";
import type { MemoryEstimate, PlanInput } from "./plan-types.ts";
import {
  capability,
  noteMethodList,
  onTheFlyCandidates,
  validateForcedQuantization,
  vllmQuantizationName,
} from "./quantization.ts";

function fraction(n: number): string {
  return String(Math.round(n * 100) / 100);
}

/** Lower gpu_memory_utilization when the GPUs have less free memory than it asks (vLLM 0.11 refuses to start). */
function planUtilization(b: PlanBuilder, input: PlanInput, tp: number, auto: boolean): number {
  const { config, hardware: hw } = input;
  const chosen = input.explicit ? input.explicit.has("gpuMemoryUtilization") : true;
  let util = config.gpuMemoryUtilization;
  const group = hw.gpus.slice(0, Math.max(1, tp));
  const ratios = group
    .filter((g) => g.memoryFreeMiB !== null)
    .map((g) => (g.memoryFreeMiB as number) / g.memoryTotalMiB);
  const cap = ratios.length ? Math.floor((Math.min(...ratios) - 0.02) * 100) / 100 : null;
  if (cap !== null && util > cap) {
    const used = group.find(
      (g) => g.memoryFreeMiB !== null && (g.memoryFreeMiB as number) / g.memoryTotalMiB - 0.02 <= cap,
    );
    const detail = used
      ? `${used.memoryFreeMiB} of ${used.memoryTotalMiB} MiB free on GPU ${used.index}`
      : "GPU memory in use";
    if (auto && !chosen) {
      util = Math.max(0.1, cap);
      b.flag(
        "--gpu-memory-utilization",
        fraction(util),
        `${detail}: vLLM needs free >= total x utilization at start`,
      );
      return util;
    }
    b.warn(
      `--gpu-memory-utilization ${fraction(util)} asks for more than is free (${detail}); vLLM 0.11 refuses to start; lower XEROTIER_AGENT_GPU_MEMORY_UTILIZATION`,
    );
  }
  // Passed always (also with AUTO_CONFIG=0: it is xim's documented default, not tuning), so it is in the table too.
  b.flag(
    "--gpu-memory-utilization",
    fraction(util),
    chosen
      ? "XEROTIER_AGENT_GPU_MEMORY_UTILIZATION"
      : "xim's default, passed so vLLM releases that changed theirs (0.92) behave the same",
    chosen ? "explicit" : "default",
  );
  return util;
}

/** Warn about a --quantization the user forced that this model or GPU cannot take, and pass it. */
export function planForcedQuantization(b: PlanBuilder, input: PlanInput, forced: string): void {
  for (const w of validateForcedQuantization(forced, input.model, input.hardware, input.quantizationMethods))
    b.warn(w);
  b.flag("--quantization", vllmQuantizationName(forced), "XEROTIER_AGENT_VLLM_QUANTIZATION", "explicit");
  noteMethodList(b, input.quantizationMethods);
}

interface QuantChoice {
  onTheFly: string | null;
  estimate: MemoryEstimate;
}

/** What each quantization choice leaves on this GPU group, and how to say it in a decision. */
interface Sizing {
  estimate: (onTheFly: string | null) => MemoryEstimate;
  /** The KV tokens a useful context needs. */
  need: number;
  where: (e: MemoryEstimate) => string;
}

function sizingFor(input: PlanInput, tp: number, util: number): Sizing {
  const { hardware: hw, model, config } = input;
  return {
    estimate: (onTheFly) =>
      estimateGpuMemory(hw.gpus, model, {
        tp,
        util,
        onTheFly,
        enforceEager: config.vllmDisableCudaGraphs,
        maxNumSeqs: config.maxNumSeqs,
      }),
    need: minimumContext(model),
    where: (e) =>
      `weights ${gib(e.weightBytesPerGpu)} + overhead ${gib(e.overheadBytesPerGpu)} of ${gib(e.budgetBytesPerGpu)} per GPU`,
  };
}

/** A pre-quantized checkpoint: vLLM detects the method itself; xim passes nothing and checks the fit. */
function planCheckpointQuantization(
  b: PlanBuilder,
  input: PlanInput,
  q: QuantizationInfo,
  sizing: Sizing,
): QuantChoice {
  const marlin =
    (q.method === "awq" || q.method === "gptq") && (capability(input.hardware.gpus[0]) ?? 0) >= 8
      ? ` (vLLM upgrades it to ${q.method}_marlin on this GPU)`
      : "";
  b.note(
    "--quantization",
    "(not passed)",
    `the checkpoint is ${q.method}-quantized (${q.source}); vLLM detects it${marlin}, and refuses a --quantization that differs`,
  );
  const e = sizing.estimate(null);
  if (e.kvTokens < sizing.need)
    b.warn(`the ${q.method} checkpoint leaves room for only ${e.kvTokens} KV tokens (${sizing.where(e)})`);
  return { onTheFly: null, estimate: e };
}

/** The weights do not fit unquantized: the first on-the-fly method that leaves a useful KV cache. */
function chooseOnTheFly(
  b: PlanBuilder,
  input: PlanInput,
  sizing: Sizing,
  plain: MemoryEstimate,
): QuantChoice {
  const { model, hardware: hw } = input;
  const { need, where } = sizing;
  const tried: string[] = [];
  let last: QuantChoice | null = null;
  noteMethodList(b, input.quantizationMethods);
  for (const c of onTheFlyCandidates(hw, input.quantizationMethods)) {
    const e = sizing.estimate(c.method);
    last = { onTheFly: c.method, estimate: e };
    if (e.kvTokens >= need) {
      const before = `${gib(plain.weightBytesPerGpu)} of ${model.dtype ?? "unquantized"} weights per GPU leave no room for ${need} tokens of KV cache in ${gib(plain.budgetBytesPerGpu)}`;
      b.flag(
        "--quantization",
        c.method,
        `${before}${tried.length ? `; ${tried.join("; ")}` : ""}; ${c.why}: ${where(e)}, ${e.kvTokens} KV tokens`,
      );
      return last;
    }
    tried.push(`${c.method} would leave ${e.kvTokens} KV tokens`);
  }
  if (last) {
    b.flag(
      "--quantization",
      last.onTheFly as string,
      `the most aggressive method available; the model still does not fit (${where(last.estimate)})`,
    );
    b.warn(
      `${model.architecture} does not fit these GPUs even with ${last.onTheFly}: add GPUs or use a smaller (or pre-quantized) model`,
    );
    return last;
  }
  b.warn(
    `${model.architecture} does not fit (${where(plain)}) and no on-the-fly quantization applies to this GPU`,
  );
  return { onTheFly: null, estimate: plain };
}

function planGpuQuantization(
  b: PlanBuilder,
  input: PlanInput,
  tp: number,
  util: number,
  auto: boolean,
): QuantChoice {
  const { model, config } = input;
  const sizing = sizingFor(input, tp, util);
  if (config.vllmQuantization) {
    planForcedQuantization(b, input, config.vllmQuantization);
    const onTheFly = model.quantization ? null : config.vllmQuantization;
    return { onTheFly, estimate: sizing.estimate(onTheFly) };
  }
  if (model.quantization) return planCheckpointQuantization(b, input, model.quantization, sizing);
  const plain = sizing.estimate(null);
  if (!auto && plain.kvBudgetBytesPerGpu <= 0) {
    b.warn(
      `the weights do not fit: ${sizing.where(plain)}; vLLM will run out of memory (XEROTIER_AGENT_AUTO_CONFIG=0 leaves quantization to XEROTIER_AGENT_VLLM_QUANTIZATION)`,
    );
  }
  if (!auto || plain.kvTokens >= sizing.need) {
    if (auto)
      b.note(
        "--quantization",
        "none",
        `the ${model.dtype ?? "unquantized"} weights fit: ${sizing.where(plain)}, ${plain.kvTokens} KV tokens left`,
      );
    return { onTheFly: null, estimate: plain };
  }
  return chooseOnTheFly(b, input, sizing, plain);
}

/** The GPU plan after tensor parallelism: utilization, quantization, context length, dtype, LMCache. */
export function planGpuEngine(
  b: PlanBuilder,
  input: PlanInput,
  tp: number,
): { estimate: MemoryEstimate; maxModelLen: number | null } {
  const { hardware: hw, model, config } = input;
  const auto = config.autoConfig;
  const util = planUtilization(b, input, tp, auto);
  const { estimate } = planGpuQuantization(b, input, tp, util, auto);
  const smallest = hw.gpus
    .slice(0, Math.max(1, tp))
    .reduce((a, g) => (g.memoryTotalMiB < a.memoryTotalMiB ? g : a));
  const maxModelLen = planMaxModelLen(
    b,
    model,
    config.maxModelLen,
    estimate.kvTokens,
    auto,
    `beside ${gib(estimate.weightBytesPerGpu)} of weights on ${tp > 1 ? `each of ${tp}x` : "one"} ${smallest.name}${model.mla ? " (MLA: one latent per layer on every GPU)" : ""}`,
  );
  const cc = capability(hw.gpus[0]);
  if (auto && hw.accelerator === "nvidia" && cc !== null && cc < 8 && model.dtype === "bfloat16") {
    b.flag(
      "--dtype",
      "float16",
      `compute capability ${cc.toFixed(1)} has no bfloat16; vLLM would fall back to float16 with a warning`,
    );
  }
  if (config.maxNumSeqs !== undefined)
    b.flag("--max-num-seqs", String(config.maxNumSeqs), "XEROTIER_AGENT_MAX_NUM_SEQS", "explicit");
  planLmcache(b, hw, config, tp, lmcacheInputs(input));
  return { estimate, maxModelLen };
}

/** What planLmcache needs from the plan's input (the CPU plan passes the same). */
export function lmcacheInputs(input: PlanInput) {
  return {
    available: input.lmcacheAvailable,
    env: input.env ?? process.env,
    diskFreeBytes: input.lmcacheDiskFreeBytes,
  };
}
