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
  | "quantization-mismatch"
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
  "quantization-mismatch": "quantization mismatch",
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
