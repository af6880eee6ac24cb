/**
 * @module GPU memory arithmetic (research/vllm.md §4.2-4.5): weight bytes
 * after an on-the-fly quantization, KV cache bytes per token (MLA aware),
 * and the per-GPU budget that decides whether a model fits and how many
 * tokens of KV cache remain.
 */

import type { Gpu } from "../hardware/types.ts";
import { GiB, MiB } from "./builder.ts";
import type { ModelInfo } from "./model-info.ts";
import type { MemoryEstimate } from "./plan-types.ts";

/** vLLM's KV block on CUDA: allocation is in whole blocks of 16 tokens. */
export const BLOCK_SIZE = 16;

function dtypeBytes(dtype: string | null): number {
  switch (dtype) {
    case "float32":
    case "float":
      return 4;
    default:
      return 2;
  }
}

/** Embedding and lm_head bytes: vLLM keeps them in the model dtype under fp8/bitsandbytes. */
export function embeddingBytes(model: ModelInfo): number {
  if (!model.vocabSize) return 0;
  return model.vocabSize * model.hiddenSize * dtypeBytes(model.dtype) * (model.tieWordEmbeddings ? 1 : 2);
}

/** Bytes of the weights when the shape is all there is (no index, no files): a rough transformer count. */
export function shapeWeightBytes(model: ModelInfo): number {
  const h = model.hiddenSize;
  const attention =
    h * model.numAttentionHeads * model.headDim * 2 + h * model.numKvHeads * model.headDim * 2;
  const experts = model.moe ? model.moe.numExperts + (model.moe.sharedExperts ?? 0) : 1;
  const inter = (model.moe ? model.moe.intermediateSize : model.intermediateSize) ?? 4 * h;
  const mlp = 3 * h * inter * experts;
  return model.numLayers * (attention + mlp) * dtypeBytes(model.dtype) + embeddingBytes(model);
}

/** Bytes of the weights once loaded with `--quantization <method>` (null: as stored). */
export function loadedWeightBytes(model: ModelInfo, onTheFly: string | null): number {
  const stored = model.weightBytes ?? shapeWeightBytes(model);
  if (!onTheFly || model.quantization) return stored;
  const embed = Math.min(embeddingBytes(model), stored);
  const linear = stored - embed;
  const perByte = 1 / dtypeBytes(model.dtype);
  switch (onTheFly) {
    case "fp8":
    case "fbgemm_fp8":
    case "ptpc_fp8":
    case "fp8_per_tensor":
    case "fp8_per_block":
    case "int8_per_channel_weight_only":
    case "experts_int8":
      // 1 byte per Linear weight.
      return embed + Math.ceil(linear * perByte);
    case "bitsandbytes":
    case "bitsandbytes-fp4":
      // 4 bits per weight plus block scales (about 0.5625 byte per weight).
      return embed + Math.ceil(linear * perByte * 0.5625);
    default:
      return stored;
  }
}

/** KV cache bytes per token on each GPU (research §4.3). */
export function kvBytesPerToken(model: ModelInfo, tp: number, kvDtypeBytes = 2): number {
  if (model.mla) {
    // MLA keeps one latent (kv_lora_rank + rope dims) per layer, on every rank: not divided by TP.
    return model.numLayers * (model.mla.kvLoraRank + model.mla.qkRopeHeadDim) * kvDtypeBytes;
  }
  const kvHeadsPerGpu = Math.max(1, Math.floor(model.numKvHeads / tp));
  return 2 * model.numLayers * kvHeadsPerGpu * model.headDim * kvDtypeBytes;
}

/** vLLM's serve defaults (EngineArgs._set_default_args): big GPUs batch more. */
export function servingDefaults(gpu: Gpu): { maxNumSeqs: number; maxNumBatchedTokens: number } {
  const big = gpu.memoryTotalMiB * MiB >= 70 * GiB && !/a100/i.test(gpu.name);
  return big
    ? { maxNumSeqs: 1024, maxNumBatchedTokens: 8192 }
    : { maxNumSeqs: 256, maxNumBatchedTokens: 2048 };
}

export interface EstimateOptions {
  tp: number;
  util: number;
  onTheFly: string | null;
  enforceEager: boolean;
  maxNumSeqs?: number;
}

/** The memory picture on the smallest GPU of the tensor-parallel group. */
export function estimateGpuMemory(gpus: Gpu[], model: ModelInfo, o: EstimateOptions): MemoryEstimate {
  const group = gpus.slice(0, Math.max(1, o.tp));
  const smallest = group.reduce((a, b) => (b.memoryTotalMiB < a.memoryTotalMiB ? b : a));
  const budget = Math.floor(smallest.memoryTotalMiB * MiB * o.util);
  const weightsTotal = loadedWeightBytes(model, o.onTheFly);
  const weights = Math.ceil((weightsTotal / o.tp) * 1.05);
  const defaults = servingDefaults(smallest);
  const seqs = o.maxNumSeqs ?? defaults.maxNumSeqs;
  const inter = (model.moe?.intermediateSize ?? model.intermediateSize ?? 4 * model.hiddenSize) / o.tp;
  const activation =
    defaults.maxNumBatchedTokens * (model.hiddenSize + 2 * inter) * 2 * 4 +
    seqs * (model.vocabSize ?? 32000) * 4;
  const overhead = Math.ceil(GiB + (o.tp > 1 ? 0.5 * GiB : 0) + (o.enforceEager ? 0 : GiB) + activation);
  const kvBudget = budget - weights - overhead;
  const perToken = kvBytesPerToken(model, o.tp);
  const kvTokens = kvBudget > 0 ? Math.floor(kvBudget / perToken / BLOCK_SIZE) * BLOCK_SIZE : 0;
  return {
    budgetBytesPerGpu: budget,
    weightBytesTotal: weightsTotal,
    weightBytesPerGpu: weights,
    overheadBytesPerGpu: overhead,
    kvBudgetBytesPerGpu: kvBudget,
    kvBytesPerTokenPerGpu: perToken,
    kvTokens,
  };
}

/** The context a plan wants room for at least once: the model's own, capped at 8k. */
export function minimumContext(model: ModelInfo): number {
  return Math.min(model.derivedMaxModelLen ?? 4096, 8192);
}
