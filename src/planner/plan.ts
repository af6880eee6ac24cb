/**
 * @module The planner: (hardware, model, configuration) -> the exact vLLM
 * arguments and environment, with a reason for every decision. Pure: the
 * I/O (detection, model inspection, the LMCache probe, writing files) is
 * done by the callers (preparePlan below, writePlanFiles in lmcache.ts).
 * XEROTIER_AGENT_AUTO_CONFIG=0 keeps only explicit settings.
 */
import { stat } from "node:fs/promises";
import type { LoadedConfig } from "../core/config/load.ts";
import type { SettingKey } from "../core/config/schema.ts";
import { type DetectOptions, detectHardware } from "../hardware/detect.ts";
import type { Hardware } from "../hardware/types.ts";
import { GiB, PlanBuilder } from "./builder.ts";
import { CPU_DEFAULT_CONCURRENCY, checkBindList, planCpu, planCpuTensorParallel } from "./cpu.ts";
import { planCudaMitigation } from "./cuda-mitigation.ts";
import { lmcacheInputs, planForcedQuantization, planGpuEngine } from "./gpu-engine.ts";
import { inspectModel } from "./inspect-model.ts";
import { lmcacheDiskDir, lmcacheDiskFree, planLmcache, probeLmcache } from "./lmcache.ts";
import { planMaxModelLen } from "./max-model-len.ts";
import { kvBytesPerToken } from "./memory.ts";
import type { ModelInfo } from "./model-info.ts";
import type { Plan, PlanConfig, PlanInput } from "./plan-types.ts";
import { probeQuantizationMethods } from "./probes/vllm-quantization.ts";
import { planSpeculative } from "./speculative.ts";
import { planTensorParallel } from "./tensor-parallel.ts";

// One import for the engine: plan, print, write the plan's files, escalate after a failure.
export { nextMitigation } from "./cuda-mitigation.ts";
export { probeLmcache, writePlanFiles } from "./lmcache.ts";
export type {
  Decision,
  MemoryEstimate,
  MitigationRung,
  Plan,
  PlanConfig,
  PlanFile,
  PlanInput,
} from "./plan-types.ts";
export { PlanSchema } from "./plan-types.ts";

/** The order flags appear in argv (stable, so tests and logs compare exactly). */
export const FLAG_ORDER = [
  "--tensor-parallel-size",
  "--dtype",
  "--quantization",
  "--max-model-len",
  "--gpu-memory-utilization",
  "--max-num-seqs",
  "--disable-custom-all-reduce",
  "--enforce-eager",
  "--speculative-config",
  "--kv-transfer-config",
] as const;

/** The settings a user chose (flag, environment, .env file), from a loaded configuration. */
export function explicitSettings(loaded: Pick<LoadedConfig, "sources">): Set<SettingKey> {
  const out = new Set<SettingKey>();
  for (const [key, source] of Object.entries(loaded.sources) as Array<[SettingKey, { kind: string }]>) {
    if (source.kind !== "default") out.add(key);
  }
  return out;
}

/**
 * vLLM's API server waits VLLM_ENGINE_READY_TIMEOUT_S (default 600 s) for
 * its engine processes and then exits (vllm PR #35616), so a model that
 * loads for longer would fail behind xim's longer start-up timeout. Set
 * always, even with AUTO_CONFIG=0: it is what the timeout setting means,
 * not tuning. A value the user gave (XEROTIER_AGENT_VLLM_ENV, or inherited
 * from the agent's environment) is left alone.
 */
function planEngineReadyTimeout(
  b: PlanBuilder,
  config: PlanInput["config"],
  env: Record<string, string | undefined>,
  chosen: boolean,
): void {
  const name = "VLLM_ENGINE_READY_TIMEOUT_S";
  if (name in config.vllmEnv) return;
  const inherited = env[name];
  if (inherited !== undefined) {
    b.note(
      name,
      inherited,
      "inherited from the agent's environment (XEROTIER_AGENT_ENGINE_STARTUP_TIMEOUT_SECONDS not applied)",
      "explicit",
    );
    return;
  }
  b.setEnv(
    name,
    String(config.engineStartupTimeoutSeconds),
    "XEROTIER_AGENT_ENGINE_STARTUP_TIMEOUT_SECONDS: vLLM's own wait for its engine processes (default 600 s) would otherwise end a long model load before xim's timeout",
    chosen ? "explicit" : "default",
  );
}

/** The inputs worth a line before any decision: auto-configuration off, hardware findings, no weight files. */
function noteInputs(b: PlanBuilder, input: PlanInput): void {
  const { hardware: hw, model, config } = input;
  if (!config.autoConfig)
    b.note(
      "auto-configuration",
      "off",
      "XEROTIER_AGENT_AUTO_CONFIG=0: only explicit settings are used",
      "explicit",
    );
  for (const f of hw.findings)
    if (f.severity !== "info") b.warn(`${f.source}: ${f.message}${f.hint ? ` (${f.hint})` : ""}`);
  if (model.weightBytesSource === "none")
    b.warn(`no weight files or index in ${model.path}: the weight size is estimated from config.json`);
}

/** The CPU plan after tensor parallelism: binding, KV cache, LMCache, context length, concurrency. */
function planCpuEngine(
  b: PlanBuilder,
  input: PlanInput,
  tp: number,
): { maxModelLen: number | null; maxConcurrent: number | null } {
  const { hardware: hw, model, config } = input;
  const lmBytes = planLmcache(b, hw, config, tp, lmcacheInputs(input));
  const cpu = planCpu(b, hw, model, config.autoConfig, lmBytes, tp);
  if (config.vllmQuantization) planForcedQuantization(b, input, config.vllmQuantization);
  const kvTokens =
    cpu.kvCacheGiB === null
      ? null
      : Math.floor((cpu.kvCacheGiB * GiB) / kvBytesPerToken(model, Math.max(1, tp)));
  const maxModelLen = planMaxModelLen(
    b,
    model,
    config.maxModelLen,
    kvTokens,
    config.autoConfig,
    `in the ${cpu.kvCacheGiB} GiB CPU KV cache${tp > 1 ? " of each rank" : ""}`,
  );
  let maxConcurrent = config.maxConcurrent ?? null;
  if (maxConcurrent === null) {
    maxConcurrent = CPU_DEFAULT_CONCURRENCY;
    b.note(
      "max concurrent requests",
      String(maxConcurrent),
      `CPU inference: ${CPU_DEFAULT_CONCURRENCY}, the Xerotier documentation's starting point for CPU nodes (XEROTIER_AGENT_MAX_CONCURRENT overrides)`,
      "default",
    );
  }
  if (config.maxNumSeqs !== undefined)
    b.flag("--max-num-seqs", String(config.maxNumSeqs), "XEROTIER_AGENT_MAX_NUM_SEQS", "explicit");
  return { maxModelLen, maxConcurrent };
}

/** VLLM_TUNED_CONFIG_FOLDER for a MoE model: the tuned (or named) folder; AUTO_CONFIG=0 keeps only a named one. */
function planMoeConfigFolder(b: PlanBuilder, input: PlanInput): void {
  const { model, config } = input;
  if (!model.moe || !config.moeConfigEnabled) return;
  if (config.autoConfig) {
    const dir = input.moeTunedConfigDir ?? config.moeConfigPath;
    if (dir)
      b.setEnv(
        "VLLM_TUNED_CONFIG_FOLDER",
        dir,
        `tuned fused-MoE kernel configs for ${model.moe.numExperts} experts`,
        input.moeTunedConfigDir ? "auto" : "explicit",
      );
    return;
  }
  // AUTO_CONFIG=0 is the master switch: no tuning and no automatic folder; a folder the user named is theirs.
  if (config.moeConfigPath)
    b.setEnv(
      "VLLM_TUNED_CONFIG_FOLDER",
      config.moeConfigPath,
      "XEROTIER_AGENT_MOE_CONFIG_PATH (no tuning: XEROTIER_AGENT_AUTO_CONFIG=0)",
      "explicit",
    );
  else
    b.note(
      "MoE kernel tuning",
      "off",
      "XEROTIER_AGENT_AUTO_CONFIG=0: no tuning and no tuned-config folder (vLLM's default kernel configs)",
      "explicit",
    );
}

/** XEROTIER_AGENT_VLLM_ENV last: the user's variables win over every automatic one (and say which they replace). */
function applyUserEnv(b: PlanBuilder, input: PlanInput, tp: number): void {
  for (const [key, value] of Object.entries(input.config.vllmEnv)) {
    const replaced = key in b.env && b.env[key] !== value ? ` (replaces the automatic ${b.env[key]})` : "";
    b.setEnv(key, value, `XEROTIER_AGENT_VLLM_ENV${replaced}`, "explicit");
  }
  if (input.hardware.accelerator === "cpu") checkBindList(b, b.env, tp);
}

export function planEngine(input: PlanInput): Plan {
  const { hardware: hw, model, config } = input;
  const auto = config.autoConfig;
  const b = new PlanBuilder();
  noteInputs(b, input);
  const tp =
    (hw.accelerator === "cpu" ? planCpuTensorParallel(b, hw, model, config, auto) : null) ??
    planTensorParallel(b, hw, model, config, auto);
  const sized =
    hw.accelerator === "cpu"
      ? { estimate: null, ...planCpuEngine(b, input, tp) }
      : { maxConcurrent: config.maxConcurrent ?? null, ...planGpuEngine(b, input, tp) };
  const applied = planCudaMitigation(b, hw, config, tp, auto);
  planSpeculative(b, model, config, auto, tp, input.draftModelProblem);
  planMoeConfigFolder(b, input);
  planEngineReadyTimeout(
    b,
    config,
    input.env ?? process.env,
    input.explicit?.has("engineStartupTimeoutSeconds") ?? false,
  );
  applyUserEnv(b, input, tp);
  if (config.maxConcurrent !== undefined) {
    b.note(
      "max concurrent requests",
      String(config.maxConcurrent),
      "XEROTIER_AGENT_MAX_CONCURRENT",
      "explicit",
    );
  }
  return {
    accelerator: hw.accelerator,
    auto,
    args: b.args(FLAG_ORDER),
    env: { ...b.env },
    decisions: b.decisions,
    warnings: b.warnings,
    maxConcurrent: sized.maxConcurrent,
    files: b.files,
    tensorParallelSize: tp,
    maxModelLen: sized.maxModelLen,
    estimate: sized.estimate,
    mitigation: { enabled: auto && config.autoCudaMitigation, applied },
  };
}

/**
 * Whether a draft model path names a folder that exists. A value that is
 * not a path (no leading `/`, `./`, `../`) may be a Hugging Face id, which
 * vLLM resolves itself: not checked.
 */
export async function checkDraftModel(path: string | undefined): Promise<string | undefined> {
  if (!path || !/^(\/|\.\.?\/)/.test(path)) return undefined;
  const info = await stat(path).catch(() => undefined);
  if (!info) return `XEROTIER_AGENT_SPECULATIVE_DRAFT_MODEL_PATH=${path} does not exist`;
  if (!info.isDirectory()) return `XEROTIER_AGENT_SPECULATIVE_DRAFT_MODEL_PATH=${path} is not a folder`;
  return undefined;
}

export interface PrepareOptions {
  modelDir: string;
  config: PlanConfig & { vllmPath: string };
  explicit?: ReadonlySet<SettingKey>;
  env?: Record<string, string | undefined>;
  detect?: Omit<DetectOptions, "env">;
  moeTunedConfigDir?: string;
}

export interface PreparedPlan {
  plan: Plan;
  hardware: Hardware;
  model: ModelInfo;
}

/** Detect, inspect, probe LMCache (only when enabled) and plan: what `xim plan` and `xim run` call. */
export async function preparePlan(o: PrepareOptions): Promise<PreparedPlan> {
  const env = o.env ?? process.env;
  const [hardware, model] = await Promise.all([
    detectHardware({ ...o.detect, env }),
    inspectModel(o.modelDir),
  ]);
  const wantLm = o.config.lmcacheEnabled || o.config.kvCacheBackend === "lmcache";
  // vLLM's own list matters where a method is forced or may be chosen to fit; the probe imports vLLM (seconds).
  const wantMethods = o.config.vllmQuantization !== undefined || o.config.autoConfig;
  // The disk tier's automatic size needs the free space where it goes.
  const wantDiskFree = wantLm && o.config.lmcacheDiskSizeGb === undefined;
  const [lm, quantizationMethods, lmcacheDiskFreeBytes] = await Promise.all([
    wantLm ? probeLmcache({ vllmPath: o.config.vllmPath, env }) : undefined,
    wantMethods ? probeQuantizationMethods({ vllmPath: o.config.vllmPath, env }) : undefined,
    wantDiskFree ? lmcacheDiskFree(lmcacheDiskDir(o.config, env)) : undefined,
  ]);
  const plan = planEngine({
    hardware,
    model,
    config: o.config,
    explicit: o.explicit,
    lmcacheAvailable: lm ?? undefined,
    lmcacheDiskFreeBytes,
    quantizationMethods,
    moeTunedConfigDir: o.moeTunedConfigDir,
    draftModelProblem: o.config.speculativeEnabled
      ? await checkDraftModel(o.config.speculativeDraftModelPath)
      : undefined,
    env,
  });
  return { plan, hardware, model };
}
