/**
 * @module Tensor parallel size: the largest power of two that is at most
 * the visible GPU count and divides the attention heads (vLLM refuses a
 * size that does not), unless XEROTIER_AGENT_AUTO_CONFIGURE_GPU=0, which
 * uses XEROTIER_AGENT_TENSOR_PARALLEL_SIZE as given.
 */
import type { PlanBuilder } from "./builder.ts";
import type { Hardware } from "./hardware.ts";
import type { ModelInfo } from "./model-info.ts";
import type { PlanConfig } from "./plan-types.ts";

export function largestTensorParallel(gpuCount: number, heads: number): number {
  let tp = 1;
  for (let p = 1; p <= gpuCount; p *= 2) if (heads % p === 0) tp = p;
  return tp;
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
  if (auto && config.autoConfigureGpu && n > 0) {
    const tp = largestTensorParallel(n, model.numAttentionHeads);
    const why =
      tp === n
        ? `${n} visible GPU${n > 1 ? "s" : ""}; ${model.numAttentionHeads} attention heads divide by ${tp}`
        : `largest power of two <= ${n} visible GPUs that divides the ${model.numAttentionHeads} attention heads`;
    b.flag("--tensor-parallel-size", String(tp), why);
    if (explicit !== undefined && explicit !== tp) {
      b.warn(
        `XEROTIER_AGENT_TENSOR_PARALLEL_SIZE=${explicit} is ignored while XEROTIER_AGENT_AUTO_CONFIGURE_GPU is on (the planner chose ${tp}); set XEROTIER_AGENT_AUTO_CONFIGURE_GPU=0 to use it`,
      );
    }
    return tp;
  }
  if (explicit === undefined) {
    if (n > 0 && auto)
      b.note(
        "--tensor-parallel-size",
        "1",
        "XEROTIER_AGENT_AUTO_CONFIGURE_GPU=0 and no XEROTIER_AGENT_TENSOR_PARALLEL_SIZE: vLLM's default",
        "default",
      );
    return 1;
  }
  b.flag("--tensor-parallel-size", String(explicit), "XEROTIER_AGENT_TENSOR_PARALLEL_SIZE", "explicit");
  if (model.numAttentionHeads % explicit !== 0) {
    b.warn(
      `tensor parallel size ${explicit} does not divide the model's ${model.numAttentionHeads} attention heads; vLLM will refuse to start`,
    );
  }
  if (hw.accelerator !== "cpu" && explicit > n) {
    b.warn(`tensor parallel size ${explicit} is more than the ${n} visible GPU${n === 1 ? "" : "s"}`);
  }
  return explicit;
}
