/**
 * @module Which tuned fused-MoE config vLLM looks for, computed the way
 * vLLM computes it (research/vllm.md §3):
 * `E=<E>,N=<N>,device_name=<name>[,dtype=<dtype>][,block_shape=[a,b]].json`.
 * - E: the routed experts (num_experts | moe_num_experts | n_routed_experts
 *   | num_local_experts); with expert parallelism each rank holds E/TP.
 * - N: the per-rank intermediate size, moe_intermediate_size (Mixtral:
 *   intermediate_size) / TP, which must divide evenly; with expert
 *   parallelism the whole size.
 * - dtype: fp8_w8a8 for FP8 checkpoints (or --quantization fp8),
 *   int8_w8a16 for --quantization experts_int8, absent for bf16/fp16.
 * - block_shape: the checkpoint's weight_block_size, for block-quantised FP8.
 * - device name: the NVML name with spaces as underscores; any name with
 *   an H200 token is NVIDIA_H200 (vLLM #28349).
 */
import { dirname, join } from "node:path";
import * as v from "valibot";
import type { Config } from "../core/config/schema.ts";
import type { ModelInfo } from "../planner/inspect-model.ts";

export type MoeDtype = "fp8_w8a8" | "int8_w8a16";

export interface MoeTuning {
  /** Experts on each rank (E in the file name). */
  experts: number;
  /** Per-rank intermediate size (N in the file name). */
  n: number;
  dtype: MoeDtype | null;
  blockShape: [number, number] | null;
  deviceName: string;
  fileName: string;
  tensorParallelSize: number;
  expertParallel: boolean;
  /** The --dtype to give benchmark_moe.py. */
  benchmarkDtype: "auto" | MoeDtype;
}

export type MoeTuningFor =
  | { kind: "dense" }
  | { kind: "unsupported"; reason: string }
  | { kind: "moe"; tuning: MoeTuning };

export interface MoeOptions {
  expertParallel?: boolean;
  /** XEROTIER_AGENT_VLLM_QUANTIZATION: a forced method changes the kernel's dtype. */
  quantizationOverride?: string;
  /** The raw quantization_config, for compressed-tensors schemes. */
  quantizationConfig?: unknown;
}

/**
 * The device name vLLM puts in config file names: spaces become `_`, and a
 * name with an `H200` token between underscores is `NVIDIA_H200`
 * (fused_moe.py: `"H200" in device_name.split("_")`, case-sensitive, `-`
 * not a separator, so "NVIDIA H200-141GB" keeps its own name).
 */
export function vllmDeviceName(gpuName: string): string {
  const name = gpuName.trim().replace(/ /g, "_");
  return name.split("_").includes("H200") ? "NVIDIA_H200" : name;
}

/** The device name older vLLM releases (before #28349) used; differs only for H200 variants. */
export function legacyDeviceName(gpuName: string): string {
  return gpuName.trim().replace(/ /g, "_");
}

export function moeConfigFileName(
  t: Pick<MoeTuning, "experts" | "n" | "deviceName" | "dtype" | "blockShape">,
): string {
  const dtype = t.dtype ? `,dtype=${t.dtype}` : "";
  const block = t.blockShape ? `,block_shape=[${t.blockShape[0]},${t.blockShape[1]}]` : "";
  return `E=${t.experts},N=${t.n},device_name=${t.deviceName}${dtype}${block}.json`;
}

/** Where tuned configs are kept: XEROTIER_AGENT_MOE_CONFIG_PATH, else `moe-configs` beside the model cache. */
export function moeConfigFolder(config: Pick<Config, "moeConfigPath" | "modelCacheDir">): string {
  return config.moeConfigPath ?? join(dirname(config.modelCacheDir), "moe-configs");
}

type Json = Record<string, unknown>;

function compressedTensorsDtype(q: unknown): MoeDtype | null | "unsupported" {
  const groups = (q as Json | null)?.config_groups;
  if (!groups || typeof groups !== "object") return "unsupported";
  for (const g of Object.values(groups as Json)) {
    const w = (g as Json)?.weights as Json | undefined;
    const a = (g as Json)?.input_activations as Json | null | undefined;
    if (!w) continue;
    if (w.type === "float" && w.num_bits === 8) return "fp8_w8a8";
    if (w.type === "int" && w.num_bits === 8 && !a) return "int8_w8a16";
  }
  return "unsupported";
}

function dtypeOf(
  model: ModelInfo,
  options: MoeOptions,
): { dtype: MoeDtype | null } | { unsupported: string } {
  const forced = options.quantizationOverride;
  if (forced === "fp8" || forced === "fp8_per_tensor" || forced === "fp8_per_block")
    return { dtype: "fp8_w8a8" };
  if (forced === "experts_int8") return { dtype: "int8_w8a16" };
  const method = model.quantization?.method ?? forced;
  if (!method) return { dtype: null };
  if (method === "fp8" || method === "fbgemm_fp8" || method === "ptpc_fp8") return { dtype: "fp8_w8a8" };
  if (method === "compressed-tensors") {
    const d = compressedTensorsDtype(options.quantizationConfig);
    if (d !== "unsupported") return { dtype: d };
  }
  return {
    unsupported: `the ${method} quantization runs its experts on a kernel that benchmark_moe.py does not tune (it tunes bf16/fp16, fp8_w8a8 and int8_w8a16)`,
  };
}

/**
 * The tuned config vLLM will look for when serving `model` on `gpuName` at
 * tensor parallel size `tp`; dense models and kernels the tuner does not
 * cover say so instead.
 */
/** Why these experts cannot be sharded over `tp` ranks as asked (vLLM would refuse), or undefined. */
function shardingProblem(
  numExperts: number,
  intermediate: number,
  tp: number,
  ep: boolean,
): string | undefined {
  if (!Number.isInteger(tp) || tp < 1) return `tensor parallel size ${tp} is not a positive integer`;
  if (!ep && intermediate % tp !== 0)
    return `the expert intermediate size ${intermediate} is not divisible by tensor parallel size ${tp}; vLLM cannot shard it`;
  if (ep && numExperts % tp !== 0) return `${numExperts} experts do not split evenly over ${tp} ranks`;
  return undefined;
}

export function moeTuningFor(
  model: ModelInfo,
  gpu: string | { name: string },
  tp: number,
  options: MoeOptions = {},
): MoeTuningFor {
  const moe = model.moe;
  if (!moe || moe.numExperts <= 1) return { kind: "dense" };
  const intermediate = moe.intermediateSize;
  if (intermediate === null) {
    return {
      kind: "unsupported",
      reason: "config.json has experts but no moe_intermediate_size or intermediate_size",
    };
  }
  const ep = options.expertParallel === true;
  const problem = shardingProblem(moe.numExperts, intermediate, tp, ep);
  if (problem) return { kind: "unsupported", reason: problem };
  const d = dtypeOf(model, options);
  if ("unsupported" in d) return { kind: "unsupported", reason: d.unsupported };
  const block = model.quantization?.weightBlockSize;
  const blockShape: [number, number] | null =
    d.dtype === "fp8_w8a8" && block && block.length === 2 && !options.quantizationOverride
      ? [block[0], block[1]]
      : null;
  const name = typeof gpu === "string" ? gpu : gpu.name;
  const t = {
    experts: ep ? moe.numExperts / tp : moe.numExperts,
    n: ep ? intermediate : intermediate / tp,
    dtype: d.dtype,
    blockShape,
    deviceName: vllmDeviceName(name),
  };
  return {
    kind: "moe",
    tuning: {
      ...t,
      fileName: moeConfigFileName(t),
      tensorParallelSize: tp,
      expertParallel: ep,
      benchmarkDtype: d.dtype ?? "auto",
    },
  };
}

/** The names to look for: the current rule's, and the pre-#28349 one when it differs (H200 variants). */
export function candidateFileNames(tuning: MoeTuning, gpuName: string): string[] {
  const legacy = moeConfigFileName({ ...tuning, deviceName: legacyDeviceName(gpuName) });
  return legacy === tuning.fileName ? [tuning.fileName] : [tuning.fileName, legacy];
}

const Positive = v.pipe(v.number(), v.integer(), v.minValue(1));

export const KernelConfigSchema = v.object({
  BLOCK_SIZE_M: Positive,
  BLOCK_SIZE_N: Positive,
  BLOCK_SIZE_K: Positive,
  GROUP_SIZE_M: Positive,
  num_warps: Positive,
  num_stages: Positive,
});

/**
 * A tuned fused-MoE config file: batch sizes (as strings) to kernel
 * parameters, plus the optional "triton_version" vLLM ignores.
 */
export const MoeConfigFileSchema = v.pipe(
  v.record(v.string(), v.unknown()),
  v.rawTransform(({ dataset, addIssue, NEVER }) => {
    const out: Record<string, v.InferOutput<typeof KernelConfigSchema> | string> = {};
    let batches = 0;
    for (const [key, value] of Object.entries(dataset.value)) {
      if (key === "triton_version") {
        if (typeof value !== "string") addIssue({ message: "triton_version must be a string" });
        else out[key] = value;
        continue;
      }
      if (!/^[1-9]\d*$/.test(key)) {
        addIssue({ message: `key "${key}" is not a batch size (a positive integer)` });
        continue;
      }
      const parsed = v.safeParse(KernelConfigSchema, value);
      if (!parsed.success) {
        const i = parsed.issues[0];
        const field = i.path?.map((p) => p.key).join(".") ?? "";
        addIssue({ message: `batch size ${key}: ${field ? `${field}: ` : ""}${i.message}` });
        continue;
      }
      out[key] = parsed.output;
      batches += 1;
    }
    if (batches === 0) addIssue({ message: "no batch sizes" });
    return batches === 0 ? NEVER : out;
  }),
);
