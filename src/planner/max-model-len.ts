/**
 * @module Context length: the largest that fits the KV cache beside the
 * weights (research §4.3-4.5, MLA aware through memory.ts), capped by the
 * model's own maximum; XEROTIER_AGENT_MAX_MODEL_LEN wins and is checked.
 */
import type { PlanBuilder } from "./builder.ts";
import type { ModelInfo } from "./model-info.ts";

/** Round a token budget down to a tidy context: whole 1024s above 2048, whole 16-token blocks below. */
export function tidyContext(tokens: number): number {
  if (tokens >= 2048) return Math.floor(tokens / 1024) * 1024;
  return Math.floor(tokens / 16) * 16;
}

export function planMaxModelLen(
  b: PlanBuilder,
  model: ModelInfo,
  explicit: number | undefined,
  kvTokens: number | null,
  auto: boolean,
  where: string,
): number | null {
  const modelMax = model.derivedMaxModelLen;
  if (explicit !== undefined) {
    b.flag("--max-model-len", String(explicit), "XEROTIER_AGENT_MAX_MODEL_LEN", "explicit");
    if (modelMax !== null && explicit > modelMax) {
      b.warn(
        `XEROTIER_AGENT_MAX_MODEL_LEN=${explicit} is above the model's ${modelMax}; vLLM refuses it unless VLLM_ALLOW_LONG_MAX_MODEL_LEN=1`,
      );
    }
    if (kvTokens !== null && explicit > kvTokens) {
      b.warn(
        `XEROTIER_AGENT_MAX_MODEL_LEN=${explicit} needs more KV cache than the estimated ${kvTokens} tokens ${where}; vLLM may refuse to start (lower it, or raise XEROTIER_AGENT_GPU_MEMORY_UTILIZATION)`,
      );
    }
    return explicit;
  }
  if (!auto) return null;
  if (kvTokens === null) {
    if (modelMax !== null)
      b.note(
        "--max-model-len",
        String(modelMax),
        "the model's maximum; the memory could not be estimated",
        "default",
      );
    return null;
  }
  if (modelMax === null) {
    const len = tidyContext(kvTokens);
    b.flag("--max-model-len", String(len), `the model states no maximum; ${kvTokens} KV tokens fit ${where}`);
    return len;
  }
  if (kvTokens >= modelMax) {
    b.flag(
      "--max-model-len",
      String(modelMax),
      `the model's maximum (${modelMax}); ${kvTokens} KV tokens fit ${where}`,
    );
    return modelMax;
  }
  const len = tidyContext(kvTokens);
  if (len <= 0) {
    b.warn(`no KV cache fits ${where}: the engine cannot serve even a short request`);
    return null;
  }
  b.flag(
    "--max-model-len",
    String(len),
    `only ${kvTokens} KV tokens fit ${where}, below the model's ${modelMax}`,
  );
  return len;
}
