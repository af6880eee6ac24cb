/**
 * @module The numbers of a model's config.json, checked where the file
 * enters xim. Every dimension the planner and the MoE tuner compute with
 * must be a finite integer (a float for RoPE factors) in a range a real
 * model can have; anything else is refused naming the field, the value and
 * the range, because one zero or 1e300 here becomes `--max-model-len NaN`,
 * `VLLM_CPU_KVCACHE_SPACE=NaN` or a tuning file named `E=1e+300` further on.
 *
 * The maxima are about 50x to 1000x the largest published models (hidden
 * size 16384 and 126 layers for Llama-3.1-405B, 384 routed experts for
 * Kimi K2, a 10M-token context for Llama 4 Scout, vocabularies of 262k), so
 * no real config meets them while every product of them stays far below
 * 2^53 and no arithmetic on them overflows to Infinity.
 */
import * as v from "valibot";
import { XimError } from "../core/errors.ts";
import { safeText } from "../core/terminal-text.ts";

interface Range {
  min: number;
  max: number;
  integer: boolean;
}

const LAYERS: Range = { min: 1, max: 10_000, integer: true };
const WIDTH: Range = { min: 1, max: 1_000_000, integer: true };
const FFN_WIDTH: Range = { min: 1, max: 10_000_000, integer: true };
const HEADS: Range = { min: 1, max: 100_000, integer: true };
const VOCAB: Range = { min: 1, max: 100_000_000, integer: true };
/** Tokens of context; also the bound of a context derived with RoPE scaling. */
export const MAX_CONTEXT = 100_000_000;
const CONTEXT: Range = { min: 1, max: MAX_CONTEXT, integer: true };
const EXPERTS: Range = { min: 1, max: 100_000, integer: true };
const COUNT_OR_ZERO: Range = { min: 0, max: 100_000, integer: true };
const ROPE_FACTOR: Range = { min: 0, max: 10_000, integer: false };

/** The config keys the planner reads, each with its range (vLLM's alternative names included). */
const FIELDS: Record<string, Range> = {
  num_hidden_layers: LAYERS,
  n_layer: LAYERS,
  num_layers: LAYERS,
  hidden_size: WIDTH,
  n_embd: WIDTH,
  d_model: WIDTH,
  num_attention_heads: HEADS,
  n_head: HEADS,
  num_key_value_heads: HEADS,
  n_head_kv: HEADS,
  num_kv_heads: HEADS,
  multi_query_group_num: HEADS,
  head_dim: WIDTH,
  intermediate_size: FFN_WIDTH,
  moe_intermediate_size: FFN_WIDTH,
  vocab_size: VOCAB,
  max_position_embeddings: CONTEXT,
  n_positions: CONTEXT,
  max_seq_len: CONTEXT,
  seq_length: CONTEXT,
  model_max_length: CONTEXT,
  max_target_positions: CONTEXT,
  max_sequence_length: CONTEXT,
  max_seq_length: CONTEXT,
  seq_len: CONTEXT,
  sliding_window: { min: 0, max: MAX_CONTEXT, integer: true },
  num_experts: EXPERTS,
  moe_num_experts: EXPERTS,
  n_routed_experts: EXPERTS,
  num_local_experts: EXPERTS,
  num_experts_per_tok: EXPERTS,
  moe_topk: EXPERTS,
  n_shared_experts: COUNT_OR_ZERO,
  num_nextn_predict_layers: COUNT_OR_ZERO,
  kv_lora_rank: WIDTH,
  qk_rope_head_dim: WIDTH,
  qk_nope_head_dim: WIDTH,
  v_head_dim: WIDTH,
  q_lora_rank: WIDTH,
};

/** quantization_config / compression_config (GPTQ writes group_size -1 for per-channel). */
const QUANT_FIELDS: Record<string, Range> = {
  bits: { min: 1, max: 64, integer: true },
  w_bit: { min: 1, max: 64, integer: true },
  group_size: { min: -1, max: 1_000_000, integer: true },
  q_group_size: { min: -1, max: 1_000_000, integer: true },
};

/** rope_scaling / rope_parameters: the factor multiplies the context. */
const ROPE_FIELDS: Record<string, Range> = {
  factor: ROPE_FACTOR,
  original_max_position_embeddings: CONTEXT,
};

function describe(r: Range): string {
  return `${r.integer ? "an integer" : "a number"} from ${r.min} to ${r.max}`;
}

function inRange(r: Range) {
  const expected = `expected ${describe(r)}`;
  return v.pipe(
    v.number(expected),
    v.check(
      (n) => Number.isFinite(n) && n >= r.min && n <= r.max && (!r.integer || Number.isInteger(n)),
      expected,
    ),
  );
}

/** Absent and null are allowed (the planner has defaults); a present value must be in range. */
function shapeOf(fields: Record<string, Range>) {
  return v.looseObject(
    Object.fromEntries(Object.entries(fields).map(([k, r]) => [k, v.nullish(inRange(r))])),
  );
}

/** The numbers of a (merged, text part included) config.json the planner reads. */
export const ModelConfigNumbersSchema = shapeOf(FIELDS);
/** rope_scaling / rope_parameters, when it is an object. */
export const RopeScalingNumbersSchema = shapeOf(ROPE_FIELDS);
/** quantization_config / compression_config, when it is an object. */
export const QuantizationNumbersSchema = v.looseObject({
  ...shapeOf(QUANT_FIELDS).entries,
  weight_block_size: v.nullish(v.array(inRange(WIDTH))),
});

/** The nested objects whose numbers are checked too. */
const NESTED = [
  ["rope_scaling", RopeScalingNumbersSchema],
  ["rope_parameters", RopeScalingNumbersSchema],
  ["quantization_config", QuantizationNumbersSchema],
  ["compression_config", QuantizationNumbersSchema],
] as const;

function shown(value: unknown): string {
  const text = typeof value === "number" ? String(value) : JSON.stringify(value);
  return safeText(text ?? String(value), { maxLength: 60 });
}

function fieldPath(issue: v.BaseIssue<unknown>): string {
  return (issue.path ?? []).map((p) => String(p.key)).join(".");
}

/** The config.json field error every refusal below uses. */
export function badField(
  configPath: string,
  field: string,
  value: unknown,
  expected: string,
  hint = "the model's config.json is damaged or not a decoder model's config; re-download the model",
): XimError {
  const is = value === undefined ? "is missing" : `is ${shown(value)}`;
  return new XimError("XIM_MODEL_INVALID", `config.json field ${field} ${is}; ${expected} (${configPath})`, {
    hint,
  });
}

/**
 * Throw XIM_MODEL_INVALID for the first number out of range in `config`
 * (each problem named; a config has at most a few).
 */
export function checkModelConfigNumbers(config: Record<string, unknown>, configPath: string): void {
  for (const [key, schema] of NESTED) {
    const nested = config[key];
    if (nested && typeof nested === "object" && !Array.isArray(nested)) {
      const r = v.safeParse(schema, nested);
      if (!r.success) {
        const issue = r.issues[0];
        throw badField(configPath, `${key}.${fieldPath(issue)}`, issue.input, issue.message);
      }
    }
  }
  const result = v.safeParse(ModelConfigNumbersSchema, config);
  if (!result.success) {
    const issue = result.issues[0];
    throw badField(configPath, fieldPath(issue), issue.input, issue.message);
  }
}

/** The range of a field, for callers that refuse a derived value ("expected ..."). */
export function expectedFor(field: string): string {
  return `expected ${describe(FIELDS[field])}`;
}
