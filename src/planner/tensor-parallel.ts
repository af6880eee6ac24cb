/**
 * @module Tensor parallel size: the largest power of two that is at most
 * the visible GPU count and divides the attention heads (vLLM refuses a
 * size that does not), unless XEROTIER_AGENT_AUTO_CONFIGURE_GPU=0, which
 * uses XEROTIER_AGENT_TENSOR_PARALLEL_SIZE as given.
 */

import type { Hardware } from "../hardware/types.ts";
import type { PlanBuilder } from "./builder.ts";
import type { ModelInfo } from "./model-info.ts";
import type { PlanConfig } from "./plan-types.ts";

/**
 * Why `tp` cannot shard this model, or null. Attention heads must divide;
 * with block-quantized weights (FP8 [128, 128]) each rank's slice of the
 * MLP (and of each expert) must be a whole number of blocks, or vLLM
 * refuses to load ("... is not divisible by weight quantization block_n").
 */
export function tensorParallelProblem(model: ModelInfo, tp: number): string | null {
  if (model.numAttentionHeads % tp !== 0)
    return `${model.numAttentionHeads} attention heads do not divide by ${tp}`;
  const block = model.quantization?.weightBlockSize?.[0];
  if (block) {
    for (const [name, size] of [
      ["expert intermediate size", model.moe?.intermediateSize ?? null],
      ["intermediate size", model.intermediateSize],
    ] as const) {
      if (size !== null && (size / tp) % block !== 0) {
        return `the ${name} ${size} split ${tp} ways is not a whole number of ${block}-wide quantization blocks`;
      }
    }
  }
  return null;
}

export function largestTensorParallel(gpuCount: number, model: ModelInfo): number {
  let tp = 1;
  for (let p = 1; p <= gpuCount; p *= 2) if (tensorParallelProblem(model, p) === null) tp = p;
  return tp;
}

/** Automatic: the largest power of two up to the GPU count that shards the model, saying what stopped it. */
function planAutoTensorParallel(
  b: PlanBuilder,
  n: number,
  model: ModelInfo,
  explicit: number | undefined,
): number {
  const tp = largestTensorParallel(n, model);
  let limit = "";
  for (let p = tp * 2; p <= n; p *= 2) {
    const problem = tensorParallelProblem(model, p);
    if (problem) {
      limit = ` (not ${p}: ${problem})`;
      break;
    }
  }
  const why =
    tp === n
      ? `${n} visible GPU${n > 1 ? "s" : ""}; ${model.numAttentionHeads} attention heads divide by ${tp}`
      : `largest power of two <= ${n} visible GPUs that shards the model${limit}`;
  b.flag("--tensor-parallel-size", String(tp), why);
  if (explicit !== undefined && explicit !== tp) {
    b.warn(
      `XEROTIER_AGENT_TENSOR_PARALLEL_SIZE=${explicit} is ignored while XEROTIER_AGENT_AUTO_CONFIGURE_GPU is on (the planner chose ${tp}); set XEROTIER_AGENT_AUTO_CONFIGURE_GPU=0 to use it`,
    );
  }
  return tp;
}

/** XEROTIER_AGENT_TENSOR_PARALLEL_SIZE as given, with a warning where vLLM will refuse it. */
function planExplicitTensorParallel(
  b: PlanBuilder,
  hw: Hardware,
  model: ModelInfo,
  explicit: number,
): number {
  const n = hw.gpus.length;
  b.flag("--tensor-parallel-size", String(explicit), "XEROTIER_AGENT_TENSOR_PARALLEL_SIZE", "explicit");
  const problem = tensorParallelProblem(model, explicit);
  if (problem)
    b.warn(
      `tensor parallel size ${explicit} cannot shard this model (${problem}); vLLM will refuse to start`,
    );
  if (hw.accelerator !== "cpu" && explicit > n) {
    b.warn(`tensor parallel size ${explicit} is more than the ${n} visible GPU${n === 1 ? "" : "s"}`);
  }
  return explicit;
}

export function planTensorParallel(
  b: PlanBuilder,
  hw: Hardware,
  model: ModelInfo,
  config: PlanConfig,
  auto: boolean,
): number {
  const n = hw.gpus.length;
  const explicit = config.tensorParallelSize;
  if (auto && config.autoConfigureGpu && n > 0) return planAutoTensorParallel(b, n, model, explicit);
  if (explicit !== undefined) return planExplicitTensorParallel(b, hw, model, explicit);
  if (n > 0 && auto)
    b.note(
      "--tensor-parallel-size",
      "1",
      "XEROTIER_AGENT_AUTO_CONFIGURE_GPU=0 and no XEROTIER_AGENT_TENSOR_PARALLEL_SIZE: vLLM's default",
      "default",
    );
  return 1;
}
