/**
 * @module Quantization (research/vllm.md §1.3-1.4). A pre-quantized
 * checkpoint gets no --quantization (vLLM detects it, and refuses a
 * mismatching one). An unquantized model that does not fit gets the
 * least aggressive on-the-fly method that makes it fit: fp8 on compute
 * capability >= 8.9, else bitsandbytes 4-bit. An explicit
 * XEROTIER_AGENT_VLLM_QUANTIZATION wins and is checked against the
 * checkpoint and against the methods the installed vLLM accepts (asked
 * of it, probes/vllm-quantization.ts; xim's built-in list when it cannot
 * be asked). The compute-capability table only warns: vLLM checks its own,
 * and its refusal is classified at start (quantization-unsupported-gpu).
 */
import { QUANTIZATION_METHODS } from "../core/config/schema.ts";
import { ExitCode, XimError } from "../core/errors.ts";
import type { Gpu, Hardware } from "../hardware/types.ts";
import type { PlanBuilder } from "./builder.ts";
import type { ModelInfo } from "./model-info.ts";
import type { InstalledQuantization } from "./probes/vllm-quantization.ts";

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

/**
 * Minimum compute capability per method (get_min_capability of current
 * vLLM: Fp8Config 75, Marlin kernels from Turing; research
 * vllm-contract-2026-12.md M4). Advisory: releases differ, vLLM decides.
 */
const MIN_CAPABILITY: Record<string, number> = {
  awq: 7.5,
  gptq: 6.0,
  awq_marlin: 7.5,
  gptq_marlin: 7.5,
  gptq_marlin_24: 8.0,
  fp8: 7.5,
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

/** The value vLLM gets for a requested method: the Xerotier documentation's bitsandbytes-fp4 is vLLM's bitsandbytes. */
export function vllmQuantizationName(method: string): string {
  return method === "bitsandbytes-fp4" ? "bitsandbytes" : method;
}

/** The methods a plan validates against: the installed vLLM's, else xim's built-in union of releases. */
export function knownMethods(installed: InstalledQuantization | undefined): readonly string[] {
  return installed?.kind === "installed" ? installed.methods : QUANTIZATION_METHODS;
}

/** Say in the plan which list the quantization choice was checked against. */
export function noteMethodList(b: PlanBuilder, installed: InstalledQuantization | undefined): void {
  if (installed?.kind === "installed") {
    b.note(
      "quantization methods",
      `installed vLLM (${installed.methods.length})`,
      `asked ${installed.python} for vllm.model_executor.layers.quantization.QUANTIZATION_METHODS`,
    );
  } else {
    b.note(
      "quantization methods",
      "xim's built-in list",
      `the union of vLLM releases xim knows; the installed vLLM was not asked${installed ? ` (${installed.reason})` : ""}, so it may still refuse a method at start`,
    );
  }
}

/** Refuse a forced method that vLLM would refuse: unknown to the installed vLLM, or a mismatch with the checkpoint. */
/** A method the installed vLLM does not list is refused before vLLM would be started with it. */
function checkInstalled(method: string, name: string, installed: InstalledQuantization | undefined): void {
  if (installed?.kind !== "installed" || installed.methods.includes(name)) return;
  throw new XimError(
    "XIM_PLAN_QUANTIZATION_UNKNOWN",
    `XEROTIER_AGENT_VLLM_QUANTIZATION=${method} is not a quantization method of the installed vLLM (${installed.python} lists: ${installed.methods.join(", ")})`,
    {
      hint: "choose one of the listed methods, unset the variable, or install a vLLM release that has this method",
      exitCode: ExitCode.config,
    },
  );
}

/** The checkpoint's own method must agree with the forced one; a checkpoint-only method needs such a checkpoint. */
function checkCheckpoint(method: string, model: ModelInfo): void {
  const ckpt = model.quantization?.method;
  if (ckpt) {
    if (ckpt === method || (COMPATIBLE[ckpt] ?? []).includes(method)) return;
    throw new XimError(
      "XIM_PLAN_QUANTIZATION_CONFLICT",
      `XEROTIER_AGENT_VLLM_QUANTIZATION=${method} conflicts with the checkpoint, which is ${ckpt}-quantized (${model.quantization?.source}); vLLM refuses the mismatch ("Quantization method specified in the model config (${ckpt}) does not match ...")`,
      {
        hint: `unset XEROTIER_AGENT_VLLM_QUANTIZATION (the checkpoint's method is detected), or set it to ${(COMPATIBLE[ckpt] ?? [ckpt]).join(" or ")}`,
        exitCode: ExitCode.config,
      },
    );
  }
  if (!CHECKPOINT_ONLY.includes(method)) return;
  throw new XimError(
    "XIM_PLAN_QUANTIZATION_CONFLICT",
    `XEROTIER_AGENT_VLLM_QUANTIZATION=${method} needs a checkpoint quantized with ${method}, but ${model.path} has no quantization_config`,
    {
      hint: "use a pre-quantized checkpoint, or an on-the-fly method: fp8 (compute capability >= 8.9 for W8A8) or bitsandbytes",
      exitCode: ExitCode.config,
    },
  );
}

/** What an NVIDIA GPU's compute capability means for the method (the installed vLLM decides). */
function capabilityWarnings(method: string, hw: Hardware): string[] {
  if (hw.accelerator !== "nvidia") return [];
  const warnings: string[] = [];
  const cc = capability(hw.gpus[0]);
  if (cc === null) return warnings;
  const min = MIN_CAPABILITY[method];
  if (min !== undefined && cc < min) {
    warnings.push(
      `XEROTIER_AGENT_VLLM_QUANTIZATION=${method} needs compute capability ${min.toFixed(1)} or newer in current vLLM; ${hw.gpus[0].name} has ${cc.toFixed(1)}: the installed vLLM decides, and refuses at start if it agrees ("not supported for the current GPU")`,
    );
  }
  if (method === "fp8" && cc < 8.9) {
    warnings.push(
      `fp8 on compute capability ${cc.toFixed(1)} runs weight-only (W8A16, FP8 Marlin): memory savings without FP8 compute`,
    );
  }
  return warnings;
}

export function validateForcedQuantization(
  method: string,
  model: ModelInfo,
  hw: Hardware,
  installed?: InstalledQuantization,
): string[] {
  checkInstalled(method, vllmQuantizationName(method), installed);
  checkCheckpoint(method, model);
  const warnings = capabilityWarnings(method, hw);
  if (method === "bitsandbytes-fp4") {
    warnings.push(
      "bitsandbytes-fp4 is passed to vLLM as --quantization bitsandbytes (vLLM's in-flight 4-bit bitsandbytes)",
    );
  }
  return warnings;
}

/** On-the-fly methods to try for an unquantized model that does not fit, least aggressive first, among those the installed vLLM has. */
export function onTheFlyCandidates(
  hw: Hardware,
  installed?: InstalledQuantization,
): Array<{ method: string; why: string }> {
  const known = knownMethods(installed);
  return candidatesFor(hw).filter((c) => known.includes(c.method));
}

function candidatesFor(hw: Hardware): Array<{ method: string; why: string }> {
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
