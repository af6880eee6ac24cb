/**
 * @module Why an engine failed, read from its last output lines. The
 * patterns are the messages vLLM really prints (tests/fixtures/vllm/ holds
 * the captured texts and names their sources); the cause goes to the router
 * and into `xim` error reports with the concrete setting to change.
 */

export type FailureCause =
  | "out-of-memory"
  | "cuda-graph-capture"
  | "model-not-found"
  | "port-in-use"
  | "max-model-len"
  | "max-model-len-above-model"
  | "no-kv-cache-memory"
  | "quantization-mismatch"
  | "quantization-unsupported-gpu"
  | "quantization-unknown"
  | "speculative-unsupported-model"
  | "speculative-package-missing"
  | "lmcache-failed"
  | "engine-ready-timeout"
  | "startup-timeout"
  | "engine-not-installed"
  | "unknown";

export interface FailureClassification {
  cause: FailureCause;
  /** A few words for people: "out of memory". */
  summary: string;
  /** The concrete next step. */
  hint: string;
  /** The output line that decided the cause, when one did. */
  evidence?: string;
}

const SUMMARY: Record<FailureCause, string> = {
  "out-of-memory": "out of memory",
  "cuda-graph-capture": "CUDA graph capture",
  "model-not-found": "model not found",
  "port-in-use": "port in use",
  "max-model-len": "context length does not fit in the KV cache",
  "max-model-len-above-model": "context length above the model's own maximum",
  "no-kv-cache-memory": "the weights leave no memory for the KV cache",
  "quantization-mismatch": "quantization mismatch",
  "quantization-unsupported-gpu": "quantization method not supported on this GPU",
  "quantization-unknown": "quantization method unknown to this vLLM",
  "speculative-unsupported-model": "speculative method not supported for this model",
  "speculative-package-missing": "suffix decoding needs the arctic-inference package",
  "lmcache-failed": "LMCache failed inside vLLM",
  "engine-ready-timeout": "vLLM's own engine start-up timeout",
  "startup-timeout": "start-up timeout",
  "engine-not-installed": "engine executable not found",
  unknown: "unknown",
};

const HINT: Record<FailureCause, string> = {
  "out-of-memory":
    "Lower XEROTIER_AGENT_GPU_MEMORY_UTILIZATION (e.g. 0.85) or XEROTIER_AGENT_MAX_MODEL_LEN, use a quantized model, or free the GPU from other processes (nvidia-smi).",
  "cuda-graph-capture":
    "Set XEROTIER_AGENT_VLLM_DISABLE_CUDA_GRAPHS=1 (eager mode), or XEROTIER_AGENT_VLLM_DISABLE_CUSTOM_ALL_REDUCE=1 on multi-GPU PCIe machines; lowering XEROTIER_AGENT_GPU_MEMORY_UTILIZATION also frees memory for the graphs.",
  "model-not-found":
    "Check the model path or Hugging Face id: a local folder needs config.json and weights; a gated repo needs HF_TOKEN in XEROTIER_AGENT_VLLM_ENV.",
  "port-in-use":
    "Another process holds the engine's port; find it with `ss -ltnp` and stop it. xim picks a free loopback port on each start.",
  "max-model-len":
    "Lower XEROTIER_AGENT_MAX_MODEL_LEN (the message names the largest length that fits) or raise XEROTIER_AGENT_GPU_MEMORY_UTILIZATION.",
  "max-model-len-above-model":
    "XEROTIER_AGENT_MAX_MODEL_LEN is above the model's own maximum (max_position_embeddings in config.json): lower it, or unset it to use the model's maximum. VLLM_ALLOW_LONG_MAX_MODEL_LEN=1 in XEROTIER_AGENT_VLLM_ENV forces it, at the risk of wrong outputs.",
  "no-kv-cache-memory":
    "The weights (with activations and CUDA graphs) fill the memory vLLM may use, so not one KV cache block fits; a shorter context does not help. Use a quantized checkpoint or XEROTIER_AGENT_VLLM_QUANTIZATION (fp8, bitsandbytes), add GPUs, or raise XEROTIER_AGENT_GPU_MEMORY_UTILIZATION.",
  "quantization-unsupported-gpu":
    "vLLM names the minimum compute capability the method needs: unset XEROTIER_AGENT_VLLM_QUANTIZATION or choose a method this GPU runs (bitsandbytes from 7.0), or use a checkpoint quantized for this GPU generation.",
  "quantization-unknown":
    "The installed vLLM does not know this --quantization value (the methods change between releases; the message lists the accepted ones): set XEROTIER_AGENT_VLLM_QUANTIZATION to one of them, or upgrade vLLM.",
  "speculative-unsupported-model":
    "vLLM's EAGLE-3 accepts only the target model types the message lists: set XEROTIER_AGENT_SPECULATIVE_METHOD to another method (ngram needs no draft model), or XEROTIER_AGENT_SPECULATIVE_ENABLED=0.",
  "speculative-package-missing":
    "Install arctic-inference in vLLM's Python environment (the message names the version), or set XEROTIER_AGENT_SPECULATIVE_METHOD to another method (ngram).",
  "lmcache-failed":
    "xim restarts the engine without LMCache (inference works, without KV cache sharing). Install lmcache in vLLM's Python environment, check that XEROTIER_AGENT_LMCACHE_REDIS_URL answers, or set XEROTIER_AGENT_LMCACHE_ENABLED=0.",
  "engine-ready-timeout":
    "vLLM's wait for its engine processes (VLLM_ENGINE_READY_TIMEOUT_S, default 600 s) ran out while the model loaded. xim sets it to XEROTIER_AGENT_ENGINE_STARTUP_TIMEOUT_SECONDS unless XEROTIER_AGENT_VLLM_ENV sets it: raise that setting, and check how fast the disk holding the weights reads.",
  "quantization-mismatch":
    "The checkpoint is already quantized with another method: unset XEROTIER_AGENT_VLLM_QUANTIZATION (or set it to the method the model config names).",
  "startup-timeout":
    "The engine did not answer GET /health in time. Big models load for many minutes: raise XEROTIER_AGENT_ENGINE_STARTUP_TIMEOUT_SECONDS, and read the engine's last lines for where it stopped.",
  "engine-not-installed":
    "Install vLLM (`pip install vllm`, or use a vLLM container image), or set XEROTIER_AGENT_VLLM_PATH to its launcher; XEROTIER_AGENT_ENGINE=sim runs the simulated engine instead.",
  unknown:
    "Read the engine's last output lines in the report, or run it with XEROTIER_AGENT_LOG_LEVEL=debug.",
};

/** Message patterns in priority order: the most specific cause first. */
const PATTERNS: Array<[FailureCause, RegExp]> = [
  [
    "model-not-found",
    /Invalid repository ID or local directory specified|HFValidationError: Repo id must be|RepositoryNotFoundError|Repository Not Found for url|is not a local folder and is not a valid model identifier/,
  ],
  ["port-in-use", /\[Errno 98\] Address already in use|address already in use|EADDRINUSE/i],
  ["quantization-mismatch", /Quantization method specified in the model config \(.*\) does not match/],
  ["quantization-unsupported-gpu", /The quantization method \S+ is not supported for the current GPU/],
  ["quantization-unknown", /Unknown quantization method: /],
  ["speculative-unsupported-model", /Eagle3 is only supported for /],
  ["speculative-package-missing", /Arctic Inference is required for suffix decoding/],
  // vLLM's LMCacheConnectorV1 imports the lmcache package; only LMCache talks to Redis inside vLLM.
  [
    "lmcache-failed",
    /No module named 'lmcache[\w.]*'|redis\.exceptions\.(?:ConnectionError|TimeoutError|AuthenticationError)/,
  ],
  [
    "engine-ready-timeout",
    /Timed out waiting for engine(?: core process(?:es)?|\(s\))? to start|VLLM_ENGINE_READY_TIMEOUT_S\)/,
  ],
  [
    "max-model-len-above-model",
    /User-specified max_model_len \(\d+\) is greater than the derived max_model_len/,
  ],
  // Before the generic OOM patterns: the weights alone fill the budget, which a smaller context cannot fix.
  ["no-kv-cache-memory", /No available memory for the cache blocks/],
  [
    "max-model-len",
    /max seq len \(\d+\)[^\n]*KV cache|maximum number of tokens that can be stored in KV cache/,
  ],
  [
    "out-of-memory",
    /OutOfMemoryError|CUDA out of memory|CUDA error: out of memory|HIP out of memory|Free memory on device .* is less than desired GPU memory utilization/,
  ],
  ["cuda-graph-capture", /graph\.replay\(\)|capture_end|stream is capturing|cudaErrorStreamCapture/],
];

const CAPTURE_START = /Capturing (?:cudagraphs|CUDA graphs?)/i;
const CAPTURE_END = /Graph capturing finished/i;

/** Whether the output shows CUDA graph capture started and not finished. */
function inCapture(lines: readonly string[]): boolean {
  let inside = false;
  for (const line of lines) {
    if (CAPTURE_END.test(line)) inside = false;
    else if (CAPTURE_START.test(line)) inside = true;
  }
  return inside;
}

/** The classification of a cause decided without output lines (a missing executable). */
export function failureOf(cause: FailureCause): FailureClassification {
  return { cause, summary: SUMMARY[cause], hint: HINT[cause] };
}

function result(cause: FailureCause, evidence?: string): FailureClassification {
  return evidence === undefined
    ? { cause, summary: SUMMARY[cause], hint: HINT[cause] }
    : { cause, summary: SUMMARY[cause], hint: HINT[cause], evidence };
}

/**
 * Classify a failed start or a crash from the engine's last lines.
 * `timedOut`: the engine was killed for not becoming ready in time; a
 * start that stalls inside CUDA graph capture is reported as a capture
 * problem (the known TP>1 PCIe hang, research vllm.md §8).
 */
export function classifyFailure(
  lines: readonly string[],
  options: { timedOut?: boolean } = {},
): FailureClassification {
  const capturing = inCapture(lines);
  for (const [cause, re] of PATTERNS) {
    const line = lines.find((l) => re.test(l));
    if (line === undefined) continue;
    if (cause === "out-of-memory" && capturing) return result("cuda-graph-capture", line);
    return result(cause, line);
  }
  if (capturing)
    return result(
      "cuda-graph-capture",
      lines.findLast((l) => CAPTURE_START.test(l)),
    );
  if (options.timedOut) return result("startup-timeout");
  return result("unknown");
}
