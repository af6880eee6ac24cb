/**
 * @module What the planner knows about a model folder, as a valibot schema:
 * the shape of its transformer, MoE/MLA/MTP fields, the checkpoint's own
 * quantization and the bytes of its weights. Produced by inspect-model.ts.
 */
import * as v from "valibot";

export const QuantizationInfoSchema = v.object({
  /** vLLM's name for the checkpoint's method: awq, gptq, fp8, compressed-tensors, bitsandbytes, modelopt, mxfp4 ... */
  method: v.string(),
  bits: v.nullable(v.number()),
  groupSize: v.nullable(v.number()),
  /** Block-quantised weights ([128, 128] for DeepSeek-V3 FP8); names the MoE tuning file's block_shape. */
  weightBlockSize: v.nullable(v.array(v.number())),
  /** Where it was read: "config.json quantization_config", "config.json compression_config", "hf_quant_config.json". */
  source: v.string(),
});
export type QuantizationInfo = v.InferOutput<typeof QuantizationInfoSchema>;

export const MoeInfoSchema = v.object({
  /** Routed experts (num_experts | moe_num_experts | n_routed_experts | num_local_experts, vLLM's order). */
  numExperts: v.number(),
  /** The config key the count came from. */
  expertsField: v.string(),
  expertsPerToken: v.nullable(v.number()),
  /** Intermediate size of one expert: moe_intermediate_size, else intermediate_size (Mixtral). */
  intermediateSize: v.nullable(v.number()),
  sharedExperts: v.nullable(v.number()),
});
export type MoeInfo = v.InferOutput<typeof MoeInfoSchema>;

export const MlaInfoSchema = v.object({
  kvLoraRank: v.number(),
  qkRopeHeadDim: v.number(),
  qkNopeHeadDim: v.nullable(v.number()),
  vHeadDim: v.nullable(v.number()),
  qLoraRank: v.nullable(v.number()),
});
export type MlaInfo = v.InferOutput<typeof MlaInfoSchema>;

export const ModelInfoSchema = v.object({
  path: v.string(),
  architecture: v.string(),
  modelType: v.nullable(v.string()),
  numLayers: v.number(),
  hiddenSize: v.number(),
  numAttentionHeads: v.number(),
  /** num_key_value_heads; equal to the attention heads when absent (MHA). */
  numKvHeads: v.number(),
  /** head_dim, else hidden_size / num_attention_heads. */
  headDim: v.number(),
  intermediateSize: v.nullable(v.number()),
  vocabSize: v.nullable(v.number()),
  /** The raw minimum of the max-position keys present in config.json. */
  maxPositionEmbeddings: v.nullable(v.number()),
  /** The context vLLM derives: that minimum with RoPE scaling applied (research §4.1). */
  derivedMaxModelLen: v.nullable(v.number()),
  /** torch_dtype, or dtype (transformers >= 4.56). */
  dtype: v.nullable(v.string()),
  moe: v.nullable(MoeInfoSchema),
  mla: v.nullable(MlaInfoSchema),
  /** num_nextn_predict_layers: MTP layers usable for speculative decoding (0 when none). */
  mtpLayers: v.number(),
  quantization: v.nullable(QuantizationInfoSchema),
  slidingWindow: v.nullable(v.number()),
  /** lm_head shares the embedding matrix (counted once in the weights). */
  tieWordEmbeddings: v.boolean(),
  /** Bytes of the weights as stored (already reflects checkpoint quantization). */
  weightBytes: v.nullable(v.number()),
  weightBytesSource: v.picklist(["index", "files", "none"]),
});
export type ModelInfo = v.InferOutput<typeof ModelInfoSchema>;
