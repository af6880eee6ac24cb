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
import { GiB, gib, PlanBuilder } from "./builder.ts";
import { CPU_DEFAULT_CONCURRENCY, checkBindList, planCpu, planCpuTensorParallel } from "./cpu.ts";
import { planCudaMitigation } from "./cuda-mitigation.ts";
import { inspectModel } from "./inspect-model.ts";
import { lmcacheDiskDir, lmcacheDiskFree, planLmcache, probeLmcache } from "./lmcache.ts";
import { planMaxModelLen } from "./max-model-len.ts";
import { estimateGpuMemory, kvBytesPerToken, minimumContext } from "./memory.ts";
import type { ModelInfo } from "./model-info.ts";
import type { MemoryEstimate, Plan, PlanConfig, PlanInput } from "./plan-types.ts";
import { probeQuantizationMethods } from "./probes/vllm-quantization.ts";
import {
  capability,
  noteMethodList,
  onTheFlyCandidates,
  validateForcedQuantization,
  vllmQuantizationName,
} from "./quantization.ts";
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

function fraction(n: number): string {
  return String(Math.round(n * 100) / 100);
}

/** Lower gpu_memory_utilization when the GPUs have less free memory than it asks (vLLM 0.11 refuses to start). */
function planUtilization(b: PlanBuilder, input: PlanInput, tp: number, auto: boolean): number {
  const { config, hardware: hw } = input;
  const chosen = input.explicit ? input.explicit.has("gpuMemoryUtilization") : true;
  let util = config.gpuMemoryUtilization;
  const group = hw.gpus.slice(0, Math.max(1, tp));
  const ratios = group
    .filter((g) => g.memoryFreeMiB !== null)
    .map((g) => (g.memoryFreeMiB as number) / g.memoryTotalMiB);
  const cap = ratios.length ? Math.floor((Math.min(...ratios) - 0.02) * 100) / 100 : null;
  if (cap !== null && util > cap) {
    const used = group.find(
      (g) => g.memoryFreeMiB !== null && (g.memoryFreeMiB as number) / g.memoryTotalMiB - 0.02 <= cap,
    );
    const detail = used
      ? `${used.memoryFreeMiB} of ${used.memoryTotalMiB} MiB free on GPU ${used.index}`
      : "GPU memory in use";
    if (auto && !chosen) {
      util = Math.max(0.1, cap);
      b.flag(
        "--gpu-memory-utilization",
        fraction(util),
        `${detail}: vLLM needs free >= total x utilization at start`,
      );
      return util;
    }
    b.warn(
      `--gpu-memory-utilization ${fraction(util)} asks for more than is free (${detail}); vLLM 0.11 refuses to start; lower XEROTIER_AGENT_GPU_MEMORY_UTILIZATION`,
    );
  }
  // Passed always (also with AUTO_CONFIG=0: it is xim's documented default, not tuning), so it is in the table too.
  b.flag(
    "--gpu-memory-utilization",
    fraction(util),
    chosen
      ? "XEROTIER_AGENT_GPU_MEMORY_UTILIZATION"
      : "xim's default, passed so vLLM releases that changed theirs (0.92) behave the same",
    chosen ? "explicit" : "default",
  );
  return util;
}

interface QuantChoice {
  onTheFly: string | null;
  estimate: MemoryEstimate;
}

function planGpuQuantization(
  b: PlanBuilder,
  input: PlanInput,
  tp: number,
  util: number,
  auto: boolean,
): QuantChoice {
  const { hardware: hw, model, config } = input;
  const eager = config.vllmDisableCudaGraphs;
  const estimate = (onTheFly: string | null) =>
    estimateGpuMemory(hw.gpus, model, {
      tp,
      util,
      onTheFly,
      enforceEager: eager,
      maxNumSeqs: config.maxNumSeqs,
    });
  const need = minimumContext(model);
  const where = (e: MemoryEstimate) =>
    `weights ${gib(e.weightBytesPerGpu)} + overhead ${gib(e.overheadBytesPerGpu)} of ${gib(e.budgetBytesPerGpu)} per GPU`;

  if (config.vllmQuantization) {
    const forced = config.vllmQuantization;
    for (const w of validateForcedQuantization(forced, model, hw, input.quantizationMethods)) b.warn(w);
    b.flag("--quantization", vllmQuantizationName(forced), "XEROTIER_AGENT_VLLM_QUANTIZATION", "explicit");
    noteMethodList(b, input.quantizationMethods);
    return {
      onTheFly: model.quantization ? null : forced,
      estimate: estimate(model.quantization ? null : forced),
    };
  }
  if (model.quantization) {
    const q = model.quantization;
    const marlin =
      (q.method === "awq" || q.method === "gptq") && (capability(hw.gpus[0]) ?? 0) >= 8
        ? ` (vLLM upgrades it to ${q.method}_marlin on this GPU)`
        : "";
    b.note(
      "--quantization",
      "(not passed)",
      `the checkpoint is ${q.method}-quantized (${q.source}); vLLM detects it${marlin}, and refuses a --quantization that differs`,
    );
    const e = estimate(null);
    if (e.kvTokens < need)
      b.warn(`the ${q.method} checkpoint leaves room for only ${e.kvTokens} KV tokens (${where(e)})`);
    return { onTheFly: null, estimate: e };
  }
  const plain = estimate(null);
  if (!auto && plain.kvBudgetBytesPerGpu <= 0) {
    b.warn(
      `the weights do not fit: ${where(plain)}; vLLM will run out of memory (XEROTIER_AGENT_AUTO_CONFIG=0 leaves quantization to XEROTIER_AGENT_VLLM_QUANTIZATION)`,
    );
  }
  if (!auto || plain.kvTokens >= need) {
    if (auto)
      b.note(
        "--quantization",
        "none",
        `the ${model.dtype ?? "unquantized"} weights fit: ${where(plain)}, ${plain.kvTokens} KV tokens left`,
      );
    return { onTheFly: null, estimate: plain };
  }
  const tried: string[] = [];
  let last: QuantChoice | null = null;
  noteMethodList(b, input.quantizationMethods);
  for (const c of onTheFlyCandidates(hw, input.quantizationMethods)) {
    const e = estimate(c.method);
    last = { onTheFly: c.method, estimate: e };
    if (e.kvTokens >= need) {
      const before = `${gib(plain.weightBytesPerGpu)} of ${model.dtype ?? "unquantized"} weights per GPU leave no room for ${need} tokens of KV cache in ${gib(plain.budgetBytesPerGpu)}`;
      b.flag(
        "--quantization",
        c.method,
        `${before}${tried.length ? `; ${tried.join("; ")}` : ""}; ${c.why}: ${where(e)}, ${e.kvTokens} KV tokens`,
      );
      return last;
    }
    tried.push(`${c.method} would leave ${e.kvTokens} KV tokens`);
  }
  if (last) {
    b.flag(
      "--quantization",
      last.onTheFly as string,
      `the most aggressive method available; the model still does not fit (${where(last.estimate)})`,
    );
    b.warn(
      `${model.architecture} does not fit these GPUs even with ${last.onTheFly}: add GPUs or use a smaller (or pre-quantized) model`,
    );
    return last;
  }
  b.warn(
    `${model.architecture} does not fit (${where(plain)}) and no on-the-fly quantization applies to this GPU`,
  );
  return { onTheFly: null, estimate: plain };
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

export function planEngine(input: PlanInput): Plan {
  const { hardware: hw, model, config } = input;
  const auto = config.autoConfig;
  const b = new PlanBuilder();
  if (!auto)
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

  const tp =
    (hw.accelerator === "cpu" ? planCpuTensorParallel(b, hw, model, config, auto) : null) ??
    planTensorParallel(b, hw, model, config, auto);
  let estimate: MemoryEstimate | null = null;
  let maxModelLen: number | null;
  let maxConcurrent: number | null = config.maxConcurrent ?? null;

  if (hw.accelerator === "cpu") {
    const lmBytes = planLmcache(b, hw, config, tp, {
      available: input.lmcacheAvailable,
      env: input.env ?? process.env,
      diskFreeBytes: input.lmcacheDiskFreeBytes,
    });
    const cpu = planCpu(b, hw, model, auto, lmBytes, tp);
    if (config.vllmQuantization) {
      for (const w of validateForcedQuantization(
        config.vllmQuantization,
        model,
        hw,
        input.quantizationMethods,
      ))
        b.warn(w);
      b.flag(
        "--quantization",
        vllmQuantizationName(config.vllmQuantization),
        "XEROTIER_AGENT_VLLM_QUANTIZATION",
        "explicit",
      );
      noteMethodList(b, input.quantizationMethods);
    }
    const kvTokens =
      cpu.kvCacheGiB === null
        ? null
        : Math.floor((cpu.kvCacheGiB * GiB) / kvBytesPerToken(model, Math.max(1, tp)));
    maxModelLen = planMaxModelLen(
      b,
      model,
      config.maxModelLen,
      kvTokens,
      auto,
      `in the ${cpu.kvCacheGiB} GiB CPU KV cache${tp > 1 ? " of each rank" : ""}`,
    );
    if (maxConcurrent === null) {
      maxConcurrent = CPU_DEFAULT_CONCURRENCY;
      b.note(
        "max concurrent requests",
        String(maxConcurrent),
        `CPU inference: ${CPU_DEFAULT_CONCURRENCY}, the Xerotier documentation's starting point for CPU nodes (XEROTIER_AGENT_MAX_CONCURRENT overrides)`,
        "default",
      );
    }
  } else {
    const util = planUtilization(b, input, tp, auto);
    const q = planGpuQuantization(b, input, tp, util, auto);
    estimate = q.estimate;
    const smallest = hw.gpus
      .slice(0, Math.max(1, tp))
      .reduce((a, g) => (g.memoryTotalMiB < a.memoryTotalMiB ? g : a));
    maxModelLen = planMaxModelLen(
      b,
      model,
      config.maxModelLen,
      estimate.kvTokens,
      auto,
      `beside ${gib(estimate.weightBytesPerGpu)} of weights on ${tp > 1 ? `each of ${tp}x` : "one"} ${smallest.name}${model.mla ? " (MLA: one latent per layer on every GPU)" : ""}`,
    );
    const cc = capability(hw.gpus[0]);
    if (auto && hw.accelerator === "nvidia" && cc !== null && cc < 8 && model.dtype === "bfloat16") {
      b.flag(
        "--dtype",
        "float16",
        `compute capability ${cc.toFixed(1)} has no bfloat16; vLLM would fall back to float16 with a warning`,
      );
    }
    if (config.maxNumSeqs !== undefined)
      b.flag("--max-num-seqs", String(config.maxNumSeqs), "XEROTIER_AGENT_MAX_NUM_SEQS", "explicit");
    planLmcache(b, hw, config, tp, {
      available: input.lmcacheAvailable,
      env: input.env ?? process.env,
      diskFreeBytes: input.lmcacheDiskFreeBytes,
    });
  }
  if (hw.accelerator === "cpu" && config.maxNumSeqs !== undefined) {
    b.flag("--max-num-seqs", String(config.maxNumSeqs), "XEROTIER_AGENT_MAX_NUM_SEQS", "explicit");
  }
  const applied = planCudaMitigation(b, hw, config, tp, auto);
  planSpeculative(b, model, config, auto, tp, input.draftModelProblem);

  if (model.moe && config.moeConfigEnabled && auto) {
    const dir = input.moeTunedConfigDir ?? config.moeConfigPath;
    if (dir)
      b.setEnv(
        "VLLM_TUNED_CONFIG_FOLDER",
        dir,
        `tuned fused-MoE kernel configs for ${model.moe.numExperts} experts`,
        input.moeTunedConfigDir ? "auto" : "explicit",
      );
  } else if (model.moe && config.moeConfigEnabled) {
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
  planEngineReadyTimeout(
    b,
    config,
    input.env ?? process.env,
    input.explicit?.has("engineStartupTimeoutSeconds") ?? false,
  );
  for (const [key, value] of Object.entries(config.vllmEnv)) {
    const replaced = key in b.env && b.env[key] !== value ? ` (replaces the automatic ${b.env[key]})` : "";
    b.setEnv(key, value, `XEROTIER_AGENT_VLLM_ENV${replaced}`, "explicit");
  }
  if (hw.accelerator === "cpu") checkBindList(b, b.env, tp);
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
    maxConcurrent,
    files: b.files,
    tensorParallelSize: tp,
    maxModelLen,
    estimate,
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
