/**
 * @module Reads a local model folder: config.json (architecture, attention
 * shape, context length, dtype, MoE, MLA, MTP and quantization fields, the
 * language model's part of a multimodal config) and the size of the
 * weights (model.safetensors.index.json metadata.total_size, else the
 * weight files' sizes). The field rules follow vLLM (research/vllm.md §4).
 * Every file is read with a size limit (a symlink to /dev/zero is refused)
 * and every number is range-checked (model-config.ts) before use.
 */
import { readdir, stat } from "node:fs/promises";
import { join } from "node:path";
import { FileLimits, readTextBounded } from "../core/bounded-read.ts";
import { isXimError, XimError } from "../core/errors.ts";
import { safeText } from "../core/terminal-text.ts";
import { badField, checkModelConfigNumbers, expectedFor, MAX_CONTEXT } from "./model-config.ts";
import type { MlaInfo, ModelInfo, MoeInfo, QuantizationInfo } from "./model-info.ts";

export type { MlaInfo, ModelInfo, MoeInfo, QuantizationInfo } from "./model-info.ts";
export { ModelInfoSchema } from "./model-info.ts";

type Json = Record<string, unknown>;

function obj(value: unknown): Json | null {
  return value && typeof value === "object" && !Array.isArray(value) ? (value as Json) : null;
}

function num(c: Json, ...keys: string[]): number | null {
  for (const k of keys) {
    const val = c[k];
    if (typeof val === "number" && Number.isFinite(val)) return val;
  }
  return null;
}

function str(c: Json, ...keys: string[]): string | null {
  for (const k of keys) {
    const val = c[k];
    if (typeof val === "string" && val.length > 0) return val;
  }
  return null;
}

async function readJson(path: string, what: string, maxBytes: number): Promise<unknown> {
  return JSON.parse(await readTextBounded(path, { what, maxBytes }));
}

/** A file that is not a regular file or is over its limit: refused, never skipped as "absent". */
function isRefusedFile(err: unknown): boolean {
  return isXimError(err) && (err.code === "XIM_FILE_NOT_REGULAR" || err.code === "XIM_FILE_TOO_LARGE");
}

/** Bytes of weights an index may claim: 1 PB, far above any published checkpoint. */
const MAX_WEIGHT_BYTES = 1e15;

/** vLLM's max-position keys; the minimum of those present is the model's limit. */
const MAX_LEN_KEYS = [
  "max_position_embeddings",
  "n_positions",
  "max_seq_len",
  "seq_length",
  "model_max_length",
  "max_target_positions",
  "max_sequence_length",
  "max_seq_length",
  "seq_len",
];

/** The context vLLM derives: RoPE scaling multiplies the limit, except su/longrope/llama3 (yarn uses the original length). */
export function derivedMaxLen(c: Json): { raw: number | null; derived: number | null } {
  const present = MAX_LEN_KEYS.map((k) => num(c, k)).filter((n): n is number => n !== null);
  if (present.length === 0) return { raw: null, derived: null };
  const raw = Math.min(...present);
  const rope = obj(c.rope_scaling) ?? obj(c.rope_parameters);
  if (!rope || String(c.model_type ?? "").startsWith("gemma3")) return { raw, derived: raw };
  const type = String(rope.rope_type ?? rope.type ?? "");
  const factor = typeof rope.factor === "number" ? rope.factor : null;
  if (["su", "longrope", "llama3", "default", ""].includes(type) || factor === null)
    return { raw, derived: raw };
  if (type === "yarn") {
    const original =
      typeof rope.original_max_position_embeddings === "number" ? rope.original_max_position_embeddings : raw;
    return { raw, derived: Math.floor(original * factor) };
  }
  return { raw, derived: Math.floor(raw * factor) };
}

function moeOf(c: Json): MoeInfo | null {
  for (const field of ["num_experts", "moe_num_experts", "n_routed_experts", "num_local_experts"]) {
    const n = num(c, field);
    if (n !== null && n > 0) {
      return {
        numExperts: n,
        expertsField: field,
        expertsPerToken: num(c, "num_experts_per_tok", "moe_topk"),
        intermediateSize: num(c, "moe_intermediate_size") ?? num(c, "intermediate_size"),
        sharedExperts: num(c, "n_shared_experts"),
      };
    }
  }
  return null;
}

function mlaOf(c: Json): MlaInfo | null {
  const kv = num(c, "kv_lora_rank");
  const rope = num(c, "qk_rope_head_dim");
  if (kv === null || rope === null) return null;
  return {
    kvLoraRank: kv,
    qkRopeHeadDim: rope,
    qkNopeHeadDim: num(c, "qk_nope_head_dim"),
    vHeadDim: num(c, "v_head_dim"),
    qLoraRank: num(c, "q_lora_rank"),
  };
}

/** The method a quantization_config names, with vLLM's spellings (ModelOpt, bitsandbytes flags). */
function quantMethodOf(q: Json): string | null {
  const method = str(q, "quant_method")?.toLowerCase() ?? null;
  const producer = obj(q.producer);
  if (producer?.name === "modelopt" || (method === null && typeof q.quant_algo === "string")) {
    const algo = String(q.quant_algo ?? obj(q.quantization)?.quant_algo ?? "").toUpperCase();
    return algo.includes("NVFP4") ? "modelopt_fp4" : "modelopt";
  }
  if (method === null && (q.load_in_4bit === true || q.load_in_8bit === true)) return "bitsandbytes";
  return method === "compressed_tensors" ? "compressed-tensors" : method;
}

function quantBitsOf(q: Json, method: string): number | null {
  const bits = num(q, "bits", "w_bit");
  if (bits !== null) return bits;
  if (method === "bitsandbytes") return q.load_in_8bit === true ? 8 : 4;
  if (method === "fp8" || method === "fbgemm_fp8") return 8;
  return null;
}

/** Normalise a quantization_config the way vLLM's _parse_quant_hf_config does (research §1.4). */
export function quantizationOf(q: Json, source: string): QuantizationInfo | null {
  const method = quantMethodOf(q);
  if (method === null) return null;
  const block = Array.isArray(q.weight_block_size)
    ? (q.weight_block_size as unknown[]).filter((x): x is number => typeof x === "number")
    : null;
  return {
    method,
    bits: quantBitsOf(q, method),
    groupSize: num(q, "group_size", "q_group_size"),
    weightBlockSize: block && block.length > 0 ? block : null,
    source,
  };
}

async function weightBytes(
  dir: string,
): Promise<{ bytes: number | null; source: ModelInfo["weightBytesSource"] }> {
  for (const name of ["model.safetensors.index.json", "pytorch_model.bin.index.json"]) {
    const path = join(dir, name);
    let index: Json | null;
    try {
      index = obj(await readJson(path, `the model's ${name}`, FileLimits.modelIndex));
    } catch (err) {
      if (isRefusedFile(err)) throw err;
      continue; // no index, or not JSON: fall back to the files
    }
    const total = obj(index?.metadata)?.total_size;
    if (total === undefined || total === null) continue;
    if (typeof total !== "number" || !Number.isInteger(total) || total < 1 || total > MAX_WEIGHT_BYTES) {
      throw new XimError(
        "XIM_MODEL_INVALID",
        `${name} field metadata.total_size is ${safeText(String(total), { maxLength: 60 })}; expected an integer from 1 to ${MAX_WEIGHT_BYTES} bytes (${path})`,
        {
          hint: "the index is damaged; re-download the model, or delete the index to count the weight files",
        },
      );
    }
    return { bytes: total, source: "index" };
  }
  const entries = await readdir(dir).catch(() => [] as string[]);
  const weights = entries.filter(
    (f) => /\.(safetensors|bin|pt|pth|gguf)$/.test(f) && !f.startsWith("training_args"),
  );
  if (weights.length === 0) return { bytes: null, source: "none" };
  let total = 0;
  for (const f of weights) total += (await stat(join(dir, f))).size;
  return { bytes: total, source: "files" };
}

/** The model's config.json as a JSON object, with a clear error for a missing or unreadable one. */
async function readModelConfig(dir: string, configPath: string): Promise<Json> {
  let parsed: unknown;
  try {
    parsed = await readJson(configPath, "the model's config.json", FileLimits.modelConfig);
  } catch (err) {
    if (isXimError(err)) throw err;
    const e = err as NodeJS.ErrnoException;
    if (e.code === "ENOENT") {
      throw new XimError("XIM_MODEL_NOT_FOUND", `no config.json in the model folder ${dir}`, {
        hint: "point at a Hugging Face model folder (config.json beside the .safetensors files)",
        cause: err,
      });
    }
    throw new XimError("XIM_MODEL_INVALID", `cannot read ${configPath}: ${e.message}`, {
      hint: "the file must be the model's JSON config; re-download the model",
      cause: err,
    });
  }
  const top = obj(parsed);
  if (!top) throw new XimError("XIM_MODEL_INVALID", `${configPath} is not a JSON object`);
  return top;
}

/** The transformer's shape: the dimensions the planner cannot do without are refused when absent. */
function shapeOf(c: Json, configPath: string) {
  /** A dimension the planner cannot do without: the first of `keys` present, else refused. */
  const required = (...keys: [string, ...string[]]): number => {
    const value = num(c, ...keys);
    if (value !== null) return value;
    throw badField(
      configPath,
      keys[0],
      undefined,
      `${expectedFor(keys[0])} (the planner needs the transformer shape)`,
      "the planner needs a decoder model's config.json; set XEROTIER_AGENT_AUTO_CONFIG=0 to start with explicit settings",
    );
  };
  const numLayers = required("num_hidden_layers", "n_layer", "num_layers");
  const hiddenSize = required("hidden_size", "n_embd", "d_model");
  const numAttentionHeads = required("num_attention_heads", "n_head");
  const numKvHeads =
    num(c, "num_key_value_heads", "n_head_kv", "num_kv_heads", "multi_query_group_num") ?? numAttentionHeads;
  const headDim = num(c, "head_dim") ?? Math.max(1, Math.floor(hiddenSize / numAttentionHeads));
  return { numLayers, hiddenSize, numAttentionHeads, numKvHeads, headDim };
}

/** The context length config.json gives, refused when rope scaling takes it out of range. */
function contextOf(c: Json, configPath: string) {
  const len = derivedMaxLen(c);
  if (len.derived !== null && (len.derived < 1 || len.derived > MAX_CONTEXT)) {
    const rope = obj(c.rope_scaling) ? "rope_scaling" : "rope_parameters";
    throw badField(
      configPath,
      `${rope}.factor`,
      obj(c[rope])?.factor,
      `expected a number that keeps the derived context from 1 to ${MAX_CONTEXT} tokens (this one gives ${len.derived})`,
    );
  }
  return len;
}

/** The checkpoint's quantization: config.json's quantization_config or compression_config, else hf_quant_config.json. */
async function quantizationIn(dir: string, c: Json): Promise<QuantizationInfo | null> {
  const qc = obj(c.quantization_config);
  const cc = obj(c.compression_config);
  const declared = qc
    ? quantizationOf(qc, "config.json quantization_config")
    : cc
      ? quantizationOf({ quant_method: "compressed-tensors", ...cc }, "config.json compression_config")
      : null;
  if (declared) return declared;
  let hf: Json | null;
  try {
    const path = join(dir, "hf_quant_config.json");
    hf = obj(await readJson(path, "the model's hf_quant_config.json", FileLimits.modelConfig));
  } catch (err) {
    if (isRefusedFile(err)) throw err;
    return null; // most models have no hf_quant_config.json
  }
  if (!hf) return null;
  return quantizationOf({ producer: hf.producer, ...(obj(hf.quantization) ?? {}) }, "hf_quant_config.json");
}

export async function inspectModel(dir: string): Promise<ModelInfo> {
  const configPath = join(dir, "config.json");
  const top = await readModelConfig(dir, configPath);
  // Multimodal configs keep the language model in text_config; vLLM reads that part.
  const text = obj(top.text_config) ?? obj(obj(top.thinker_config)?.text_config);
  const c: Json = text ? { ...top, ...text } : top;
  const architecture =
    Array.isArray(top.architectures) && typeof top.architectures[0] === "string"
      ? top.architectures[0]
      : (str(c, "model_type") ?? "unknown");
  checkModelConfigNumbers(c, configPath);
  const shape = shapeOf(c, configPath);
  const len = contextOf(c, configPath);
  const quantization = await quantizationIn(dir, c);
  const weights = await weightBytes(dir);
  const sliding = num(c, "sliding_window");
  return {
    path: dir,
    architecture,
    modelType: str(c, "model_type"),
    ...shape,
    intermediateSize: num(c, "intermediate_size"),
    vocabSize: num(c, "vocab_size"),
    maxPositionEmbeddings: len.raw,
    derivedMaxModelLen: len.derived,
    dtype: str(c, "torch_dtype", "dtype"),
    moe: moeOf(c),
    mla: mlaOf(c),
    mtpLayers: num(c, "num_nextn_predict_layers") ?? 0,
    quantization,
    slidingWindow: c.use_sliding_window === false ? null : sliding,
    tieWordEmbeddings: c.tie_word_embeddings === true,
    weightBytes: weights.bytes,
    weightBytesSource: weights.source,
  };
}
