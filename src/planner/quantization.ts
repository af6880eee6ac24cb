/**
 * @module Quantization (research/vllm.md §1.3-1.4). A pre-quantized
 * checkpoint gets no --quantization (vLLM detects it, and refuses a
 * mismatching one). An unquantized model that does not fit gets the
 * least aggressive on-the-fly method that makes it fit: fp8 on compute
 * capability >= 8.9, else bitsandbytes 4-bit. An explicit
 * XEROTIER_AGENT_VLLM_QUANTIZATION wins and is checked against the
 * checkpoint and the GPU first.
 */
import { ExitCode, XimError } from "../core/errors.ts";
import type { Gpu, Hardware } from "./hardware.ts";
import type { ModelInfo } from "./model-info.ts";

/** Methods that only make sense for a checkpoint already quantized with them. */
const CHECKPOINT_ONLY = [
  "awq",
  "awq_marlin",
  "gptq",
  "gptq_marlin",
  "gptq_marlin_24",
  "compressed-tensors",
  "gguf",
  "modelopt",
  "modelopt_fp4",
  "mxfp4",
  "quark",
  "moe_wna16",
  "hqq",
  "inc",
];

/** Minimum compute capability per method (get_min_capability, v0.11). */
const MIN_CAPABILITY: Record<string, number> = {
  awq: 7.5,
  gptq: 6.0,
  awq_marlin: 8.0,
  gptq_marlin: 8.0,
  gptq_marlin_24: 8.0,
  fp8: 8.0,
  bitsandbytes: 7.0,
  "bitsandbytes-fp4": 7.0,
  "compressed-tensors": 7.0,
};

/** Checkpoint method -> values of --quantization vLLM accepts for it. */
const COMPATIBLE: Record<string, string[]> = {
  awq: ["awq", "awq_marlin"],
  gptq: ["gptq", "gptq_marlin", "gptq_marlin_24"],
  bitsandbytes: ["bitsandbytes", "bitsandbytes-fp4"],
};

export function capability(gpu: Gpu | undefined): number | null {
  const cc = gpu?.computeCapability;
  if (!cc) return null;
  const n = Number(cc);
  return Number.isFinite(n) ? n : null;
}

/** The value vLLM gets for a requested method: the seed's bitsandbytes-fp4 is vLLM's bitsandbytes. */
export function vllmQuantizationName(method: string): string {
  return method === "bitsandbytes-fp4" ? "bitsandbytes" : method;
}

/** Refuse a forced method that vLLM would refuse: a mismatch with the checkpoint, or too old a GPU. */
export function validateForcedQuantization(method: string, model: ModelInfo, hw: Hardware): string[] {
  const warnings: string[] = [];
  const ckpt = model.quantization?.method;
  if (ckpt) {
    const ok = ckpt === method || (COMPATIBLE[ckpt] ?? []).includes(method);
    if (!ok) {
      throw new XimError(
        "XIM_PLAN_QUANTIZATION_CONFLICT",
        `XEROTIER_AGENT_VLLM_QUANTIZATION=${method} conflicts with the checkpoint, which is ${ckpt}-quantized (${model.quantization?.source}); vLLM refuses the mismatch ("Quantization method specified in the model config (${ckpt}) does not match ...")`,
        {
          hint: `unset XEROTIER_AGENT_VLLM_QUANTIZATION (the checkpoint's method is detected), or set it to ${(COMPATIBLE[ckpt] ?? [ckpt]).join(" or ")}`,
          exitCode: ExitCode.config,
        },
      );
    }
  } else if (CHECKPOINT_ONLY.includes(method)) {
    throw new XimError(
      "XIM_PLAN_QUANTIZATION_CONFLICT",
      `XEROTIER_AGENT_VLLM_QUANTIZATION=${method} needs a checkpoint quantized with ${method}, but ${model.path} has no quantization_config`,
      {
        hint: "use a pre-quantized checkpoint, or an on-the-fly method: fp8 (compute capability >= 8.9 for W8A8) or bitsandbytes",
        exitCode: ExitCode.config,
      },
    );
  }
  if (hw.accelerator === "nvidia") {
    const cc = capability(hw.gpus[0]);
    const min = MIN_CAPABILITY[method];
    if (cc !== null && min !== undefined && cc < min) {
      throw new XimError(
        "XIM_PLAN_QUANTIZATION_UNSUPPORTED",
        `XEROTIER_AGENT_VLLM_QUANTIZATION=${method} needs compute capability ${min.toFixed(1)} or newer; ${hw.gpus[0].name} has ${cc.toFixed(1)}`,
        { hint: "choose another method or unset the variable", exitCode: ExitCode.config },
      );
    }
    if (method === "fp8" && cc !== null && cc < 8.9) {
      warnings.push(
        `fp8 on compute capability ${cc.toFixed(1)} runs weight-only (W8A16, FP8 Marlin): memory savings without FP8 compute`,
      );
    }
  }
  if (method === "bitsandbytes-fp4") {
    warnings.push(
      "bitsandbytes-fp4 is passed to vLLM as --quantization bitsandbytes (vLLM's in-flight 4-bit bitsandbytes)",
    );
  }
  return warnings;
}

/** On-the-fly methods to try for an unquantized model that does not fit, least aggressive first. */
export function onTheFlyCandidates(hw: Hardware): Array<{ method: string; why: string }> {
  if (hw.accelerator === "nvidia") {
    const cc = capability(hw.gpus[0]);
    const out: Array<{ method: string; why: string }> = [];
    if (cc !== null && cc >= 8.9)
      out.push({
        method: "fp8",
        why: `dynamic FP8 (W8A8) on compute capability ${cc.toFixed(1)} halves the weights`,
      });
    if (cc === null || cc >= 7.0) {
      out.push({
        method: "bitsandbytes",
        why:
          cc !== null && cc < 8.9
            ? `compute capability ${cc.toFixed(1)} has no FP8 tensor cores; bitsandbytes 4-bit quarters the weights (awq/gptq need a pre-quantized checkpoint)`
            : "bitsandbytes 4-bit quarters the weights",
      });
    }
    return out;
  }
  if (hw.accelerator === "amd" && /MI3\d\d/i.test(hw.gpus[0]?.name ?? "")) {
    return [{ method: "fp8", why: "dynamic FP8 on MI300-class GPUs halves the weights" }];
  }
  return [];
}
