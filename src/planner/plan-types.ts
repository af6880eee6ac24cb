/**
 * @module The plan: what the planner hands the engine (argv after
 * `vllm serve <model>`, environment, files to write) and why (a decision
 * with its reason for every setting it chose, warnings), as a valibot
 * schema so `xim plan --json` and `xim run --dry-run` print one shape.
 */
import * as v from "valibot";
import type { Config, SettingKey } from "../core/config/schema.ts";
import { Secret } from "../core/secret.ts";
import type { Hardware } from "../hardware/types.ts";
import type { ModelInfo } from "./model-info.ts";
import type { InstalledQuantization } from "./probes/vllm-quantization.ts";

export const DecisionSchema = v.object({
  /** The vLLM flag or variable decided (--tensor-parallel-size, VLLM_CPU_KVCACHE_SPACE, speculative method ...). */
  setting: v.string(),
  value: v.string(),
  reason: v.string(),
  /** auto: the planner chose it; explicit: a setting the user gave; default: a documented default. */
  source: v.picklist(["auto", "explicit", "default"]),
});
export type Decision = v.InferOutput<typeof DecisionSchema>;

export const PlanFileSchema = v.object({
  path: v.string(),
  purpose: v.string(),
  /** The content with secrets shown as ***, safe to print. */
  content: v.string(),
  /** The content to write when it holds a secret (serialises as [redacted]). */
  secretContent: v.optional(v.instance(Secret)),
});
export type PlanFile = v.InferOutput<typeof PlanFileSchema>;

export const MitigationRungSchema = v.picklist([
  "disable-custom-all-reduce",
  "nccl-p2p-disable",
  "enforce-eager",
]);
export type MitigationRung = v.InferOutput<typeof MitigationRungSchema>;

export const MemoryEstimateSchema = v.object({
  /** Memory vLLM may use on the smallest GPU of the group: total x gpu_memory_utilization. */
  budgetBytesPerGpu: v.number(),
  weightBytesTotal: v.number(),
  weightBytesPerGpu: v.number(),
  overheadBytesPerGpu: v.number(),
  kvBudgetBytesPerGpu: v.number(),
  kvBytesPerTokenPerGpu: v.number(),
  /** Tokens of KV cache that fit per GPU (a multiple of the 16-token block). */
  kvTokens: v.number(),
});
export type MemoryEstimate = v.InferOutput<typeof MemoryEstimateSchema>;

export const PlanSchema = v.object({
  accelerator: v.picklist(["nvidia", "amd", "cpu"]),
  /** Whether auto-configuration ran (XEROTIER_AGENT_AUTO_CONFIG). */
  auto: v.boolean(),
  /** Arguments for `vllm serve <model>` (the engine adds the model, host and port). */
  args: v.array(v.string()),
  /** Environment for the engine process, on top of the agent's own. */
  env: v.record(v.string(), v.string()),
  decisions: v.array(DecisionSchema),
  warnings: v.array(v.string()),
  /** In-flight request ceiling; null lets the engine derive it from its capacity. */
  maxConcurrent: v.nullable(v.number()),
  /** Files the engine must write before it starts (lmcache_config.yaml). */
  files: v.array(PlanFileSchema),
  tensorParallelSize: v.number(),
  maxModelLen: v.nullable(v.number()),
  estimate: v.nullable(MemoryEstimateSchema),
  mitigation: v.object({
    /** XEROTIER_AGENT_AUTO_CUDA_MITIGATION: whether nextMitigation may escalate at restart. */
    enabled: v.boolean(),
    applied: v.array(MitigationRungSchema),
  }),
});
export type Plan = v.InferOutput<typeof PlanSchema>;

/** The settings the planner reads. */
export type PlanConfig = Pick<
  Config,
  | "autoConfig"
  | "autoConfigureGpu"
  | "autoCudaMitigation"
  | "tensorParallelSize"
  | "gpuMemoryUtilization"
  | "maxModelLen"
  | "maxNumSeqs"
  | "maxConcurrent"
  | "vllmQuantization"
  | "speculativeEnabled"
  | "speculativeMethod"
  | "speculativeTokens"
  | "speculativeNgramFallback"
  | "speculativeDraftModelPath"
  | "vllmDisableCudaGraphs"
  | "vllmDisableCustomAllReduce"
  | "vllmEnv"
  | "kvCacheBackend"
  | "lmcacheEnabled"
  | "lmcacheRedisUrl"
  | "lmcacheDiskSizeGb"
  | "lmcacheDir"
  | "configDir"
  | "moeConfigEnabled"
  | "moeConfigPath"
  | "engineStartupTimeoutSeconds"
>;

export interface PlanInput {
  hardware: Hardware;
  model: ModelInfo;
  config: PlanConfig;
  /**
   * Settings the user set (flag, environment or .env file) as opposed to
   * defaults: `explicitSettings(loaded)`. Without it every value counts as
   * chosen by the user where that matters (gpu memory utilization).
   */
  explicit?: ReadonlySet<SettingKey>;
  /** The --quantization methods the installed vLLM accepts (probeQuantizationMethods); undefined: not asked. */
  quantizationMethods?: InstalledQuantization;
  /** Whether vLLM's Python can import lmcache (probeLmcache); undefined: not checked. */
  lmcacheAvailable?: boolean;
  /** Free bytes where LMCache's disk tier goes (lmcacheDiskFree), for its automatic size; undefined: not measured. */
  lmcacheDiskFreeBytes?: number | null;
  /** Folder of tuned fused-MoE configs to give vLLM (VLLM_TUNED_CONFIG_FOLDER). */
  moeTunedConfigDir?: string;
  /** Why XEROTIER_AGENT_SPECULATIVE_DRAFT_MODEL_PATH cannot be used (checkDraftModel); undefined: fine or not checked. */
  draftModelProblem?: string;
  /** Environment for path defaults (XDG_CACHE_HOME for LMCache's disk tier); default process.env. */
  env?: Record<string, string | undefined>;
}
