/**
 * @module Speculative decoding (opt-in: XEROTIER_AGENT_SPECULATIVE_ENABLED).
 * The method comes from XEROTIER_AGENT_SPECULATIVE_METHOD or the model:
 * MTP layers -> deepseek_mtp/mtp, a draft model -> eagle, else ngram. The
 * result is one --speculative-config JSON with the method's fields
 * (research/vllm.md §1.5). An unavailable primary method (MTP on a model
 * without MTP layers, eagle/medusa without a draft model or with a draft
 * model path that does not exist) falls back to ngram when
 * XEROTIER_AGENT_SPECULATIVE_NGRAM_FALLBACK is on, and the plan says why;
 * otherwise it is an error. A method vLLM refuses at start is handled by
 * the restart fallback (fallback.ts).
 */

import { DRAFT_MODEL_METHODS } from "../core/config/schema.ts";
import { ExitCode, XimError } from "../core/errors.ts";
import type { PlanBuilder } from "./builder.ts";
import type { ModelInfo } from "./model-info.ts";
import type { PlanConfig } from "./plan-types.ts";

const MTP_METHODS = ["deepseek_mtp", "mtp", "qwen3_next_mtp", "mimo_mtp", "ernie_mtp"];
const NGRAM_DEFAULT_TOKENS = 5;
const EAGLE_DEFAULT_TOKENS = 2;

/** The MTP alias the Xerotier documentation gives for this model family (vLLM's current name for all of them is "mtp"). */
function mtpAlias(model: ModelInfo): string {
  const type = model.modelType ?? "";
  if (type.startsWith("deepseek")) return "deepseek_mtp";
  if (type.startsWith("qwen3_next")) return "qwen3_next_mtp";
  if (type.startsWith("mimo")) return "mimo_mtp";
  if (type.startsWith("ernie")) return "ernie_mtp";
  return "mtp";
}

/** vLLM's --speculative-config for prompt-lookup n-gram (no draft model): the plan's, and the fallback's after a failed start. */
export function ngramSpeculativeConfig(tokens: number | undefined): Record<string, unknown> {
  return {
    method: "ngram",
    num_speculative_tokens: tokens ?? NGRAM_DEFAULT_TOKENS,
    prompt_lookup_max: 4,
    prompt_lookup_min: 2,
  };
}

function unavailable(
  method: string,
  why: string,
  config: PlanConfig,
): { fallback: boolean; message: string } {
  if (config.speculativeNgramFallback) {
    return {
      fallback: true,
      message: `speculative method ${method} is unavailable (${why}); falling back to ngram (XEROTIER_AGENT_SPECULATIVE_NGRAM_FALLBACK)`,
    };
  }
  throw new XimError(
    "XIM_PLAN_SPECULATIVE_UNAVAILABLE",
    `speculative method ${method} is unavailable: ${why}`,
    {
      hint: "choose another XEROTIER_AGENT_SPECULATIVE_METHOD (ngram needs nothing), or set XEROTIER_AGENT_SPECULATIVE_NGRAM_FALLBACK=1",
      exitCode: ExitCode.config,
    },
  );
}

/** The method to use, how it was chosen, and (after a fallback) why the primary one could not be. */
interface MethodChoice {
  method: string;
  how: string;
  source: "auto" | "explicit";
  fallbackWhy?: string;
}

/** The method named, else the model's MTP layers, else eagle for a draft model, else ngram; undefined: stays off. */
function chooseMethod(
  b: PlanBuilder,
  model: ModelInfo,
  config: PlanConfig,
  auto: boolean,
): MethodChoice | undefined {
  if (config.speculativeMethod)
    return { method: config.speculativeMethod, how: "XEROTIER_AGENT_SPECULATIVE_METHOD", source: "explicit" };
  if (!auto) {
    b.warn(
      "speculative decoding is enabled but XEROTIER_AGENT_AUTO_CONFIG=0 and no XEROTIER_AGENT_SPECULATIVE_METHOD is set: it stays off",
    );
    return undefined;
  }
  if (model.mtpLayers > 0) {
    const how = `the model has ${model.mtpLayers} MTP layer${model.mtpLayers > 1 ? "s" : ""} (num_nextn_predict_layers)`;
    return { method: mtpAlias(model), how, source: "auto" };
  }
  if (config.speculativeDraftModelPath) {
    const method = /eagle-?3/i.test(config.speculativeDraftModelPath) ? "eagle3" : "eagle";
    return {
      method,
      how: "a draft model is set (XEROTIER_AGENT_SPECULATIVE_DRAFT_MODEL_PATH)",
      source: "auto",
    };
  }
  const how = "no MTP layers and no draft model: prompt-lookup n-gram needs neither";
  return { method: "ngram", how, source: "auto" };
}

/** MTP without MTP layers, or a draft-model method without a usable draft model: ngram when allowed, else an error. */
function withFallback(
  b: PlanBuilder,
  choice: MethodChoice,
  model: ModelInfo,
  config: PlanConfig,
  draftProblem: string | undefined,
): MethodChoice {
  let { method } = choice;
  let fallbackWhy: string | undefined;
  if (MTP_METHODS.includes(method) && model.mtpLayers === 0) {
    const u = unavailable(
      method,
      `${model.architecture} has no MTP layers (num_nextn_predict_layers)`,
      config,
    );
    b.warn(u.message);
    fallbackWhy = `${method}: ${model.architecture} has no MTP layers`;
    method = "ngram";
  }
  const noDraft = !config.speculativeDraftModelPath
    ? "no draft model is set (XEROTIER_AGENT_SPECULATIVE_DRAFT_MODEL_PATH)"
    : draftProblem;
  if (DRAFT_MODEL_METHODS.includes(method) && noDraft) {
    if (!config.speculativeNgramFallback) {
      throw new XimError(
        "XIM_PLAN_SPECULATIVE_DRAFT_MISSING",
        `speculative method ${method} needs a draft model: ${noDraft}`,
        {
          hint: "set XEROTIER_AGENT_SPECULATIVE_DRAFT_MODEL_PATH to the draft model's folder, choose ngram or an MTP method, or set XEROTIER_AGENT_SPECULATIVE_NGRAM_FALLBACK=1",
          exitCode: ExitCode.config,
        },
      );
    }
    fallbackWhy = `${method} needs a draft model and ${noDraft}`;
    b.warn(
      `speculative method ${method} is unavailable (${fallbackWhy}); falling back to ngram (XEROTIER_AGENT_SPECULATIVE_NGRAM_FALLBACK)`,
    );
    method = "ngram";
  }
  return fallbackWhy === undefined ? choice : { method, how: "fallback", source: choice.source, fallbackWhy };
}

/** MTP: vLLM renamed every *_mtp to "mtp" (accepted by v0.11 and later without a deprecation warning). */
function mtpConfig(model: ModelInfo, tokens: number | undefined): Record<string, unknown> {
  const n = tokens ?? model.mtpLayers;
  if (n > model.mtpLayers && n % model.mtpLayers !== 0) {
    throw new XimError(
      "XIM_PLAN_SPECULATIVE_TOKENS",
      `XEROTIER_AGENT_SPECULATIVE_TOKENS=${n} must be a multiple of the model's ${model.mtpLayers} MTP layers when larger`,
      { exitCode: ExitCode.config },
    );
  }
  return { method: "mtp", num_speculative_tokens: n };
}

function medusaConfig(config: PlanConfig): Record<string, unknown> {
  const tokens = config.speculativeTokens;
  if (tokens === undefined) {
    throw new XimError(
      "XIM_PLAN_SPECULATIVE_TOKENS",
      "medusa needs XEROTIER_AGENT_SPECULATIVE_TOKENS (the number of Medusa heads)",
      { exitCode: ExitCode.config },
    );
  }
  return { method: "medusa", model: config.speculativeDraftModelPath, num_speculative_tokens: tokens };
}

/** The --speculative-config fields of one method (research/vllm.md §1.5). */
function speculativeConfig(
  b: PlanBuilder,
  method: string,
  input: { model: ModelInfo; config: PlanConfig; tp: number },
): Record<string, unknown> {
  const { model, config } = input;
  const tokens = config.speculativeTokens;
  if (MTP_METHODS.includes(method)) return mtpConfig(model, tokens);
  if (method === "ngram") return ngramSpeculativeConfig(tokens);
  if (method === "medusa") return medusaConfig(config);
  if (!DRAFT_MODEL_METHODS.includes(method))
    return tokens === undefined ? { method } : { method, num_speculative_tokens: tokens };
  if (method === "eagle3" && !/llama|qwen|minicpm|gpt_oss/i.test(model.modelType ?? "")) {
    b.warn(
      `vLLM 0.11 supports eagle3 only for llama, qwen, minicpm and gpt_oss targets; this model is ${model.modelType}`,
    );
  }
  return {
    method,
    model: config.speculativeDraftModelPath,
    num_speculative_tokens: tokens ?? EAGLE_DEFAULT_TOKENS,
    draft_tensor_parallel_size: method === "draft_model" ? input.tp : 1,
  };
}

export function planSpeculative(
  b: PlanBuilder,
  model: ModelInfo,
  config: PlanConfig,
  auto: boolean,
  tp: number,
  /** Why the draft model cannot be used although a path is set (it does not exist); from preparePlan's check. */
  draftProblem?: string,
): void {
  if (!config.speculativeEnabled) return;
  const chosen = chooseMethod(b, model, config, auto);
  if (!chosen) return;
  const { method, how, source, fallbackWhy } = withFallback(b, chosen, model, config, draftProblem);
  const spec = speculativeConfig(b, method, { model, config, tp });
  const alias =
    spec.method === "mtp" && method !== "mtp" ? ` (vLLM's current name for ${method} is mtp)` : "";
  b.note(
    "speculative method",
    method,
    how === "fallback"
      ? `n-gram fallback (XEROTIER_AGENT_SPECULATIVE_NGRAM_FALLBACK): the primary method is unavailable (${fallbackWhy})`
      : `${how}${alias}`,
    how === "fallback" ? "auto" : source,
  );
  b.flag(
    "--speculative-config",
    JSON.stringify(spec),
    `speculative decoding on (XEROTIER_AGENT_SPECULATIVE_ENABLED); ${spec.num_speculative_tokens ?? "the method's default number of"} speculative token${spec.num_speculative_tokens === 1 ? "" : "s"}${config.speculativeTokens === undefined ? " (method default)" : ""}`,
    source,
  );
}
