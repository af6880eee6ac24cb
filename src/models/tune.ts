/**
 * @module `xim tune-moe` and the background tuning of `xim run`: find a
 * tuned fused-MoE config for this model and GPU (in
 * XEROTIER_AGENT_MOE_CONFIG_PATH, then among those the installed vLLM
 * ships), or produce one by running vLLM's own tuner
 * (benchmarks/kernels/benchmark_moe.py --tune) on the GPU, validate what it
 * wrote and store it atomically under vLLM's file name. No GPU, no numbers:
 * the tuner measures kernels and nothing here guesses them.
 */
import { constants } from "node:fs";
import { access, mkdir, mkdtemp, readdir, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import * as v from "valibot";
import { writeFileAtomic } from "../core/atomic-file.ts";
import { FileLimits, readTextBounded } from "../core/bounded-read.ts";
import type { Config } from "../core/config/schema.ts";
import { isXimError, XimError } from "../core/errors.ts";
import type { Logger } from "../core/log.ts";
import type { Gpu } from "../hardware/detect.ts";
import { runTool, which } from "../hardware/run-tool.ts";
import { inspectModel, type ModelInfo } from "../planner/inspect-model.ts";
import { vllmPython } from "../planner/probes/vllm-python.ts";
import { largestTensorParallel } from "../planner/tensor-parallel.ts";
import { acquireLock } from "./lock.ts";
import {
  candidateFileNames,
  MoeConfigFileSchema,
  type MoeOptions,
  type MoeTuning,
  moeConfigFolder,
  moeTuningFor,
} from "./moe.ts";

type Env = Record<string, string | undefined>;

export type TuneConfig = Pick<
  Config,
  | "moeConfigPath"
  | "modelCacheDir"
  | "vllmPath"
  | "tensorParallelSize"
  | "vllmQuantization"
  | "autoConfig"
  | "autoConfigureGpu"
>;

export interface ModelForTuning {
  info: ModelInfo;
  /** The raw quantization_config (compressed-tensors schemes need it). */
  quantizationConfig: unknown;
  /** config.json names custom code (auto_map): the tuner needs --trust-remote-code to read it. */
  customCode: boolean;
}

export async function readModelForTuning(dir: string): Promise<ModelForTuning> {
  const info = await inspectModel(dir);
  const raw = JSON.parse(
    await readTextBounded(join(dir, "config.json"), {
      what: "the model's config.json",
      maxBytes: FileLimits.modelConfig,
    }),
  ) as Record<string, unknown>;
  return {
    info,
    quantizationConfig: raw.quantization_config ?? raw.compression_config,
    customCode: raw.auto_map !== undefined,
  };
}

/**
 * Tensor parallel size when none is given: what the planner would choose on
 * this machine (the largest power of two up to the GPU count that shards
 * the model, with XEROTIER_AGENT_AUTO_CONFIGURE_GPU on), else
 * XEROTIER_AGENT_TENSOR_PARALLEL_SIZE, else 1.
 */
export function defaultTensorParallel(
  model: ModelInfo,
  gpuCount: number,
  config: Pick<Config, "autoConfig" | "autoConfigureGpu" | "tensorParallelSize">,
): number {
  if (config.autoConfig && config.autoConfigureGpu && gpuCount > 0)
    return largestTensorParallel(gpuCount, model);
  return config.tensorParallelSize ?? 1;
}

export interface ExistingConfig {
  path: string;
  where: "moe-config-path" | "vllm";
}

export interface FindOptions {
  folder: string;
  /** The installed vLLM's shipped configs (…/fused_moe/configs); undefined when vLLM was not found. */
  vllmConfigsDir?: string;
}

export async function findExistingConfig(
  tuning: MoeTuning,
  gpuName: string,
  options: FindOptions,
): Promise<ExistingConfig | undefined> {
  const names = candidateFileNames(tuning, gpuName);
  const places: Array<[string | undefined, ExistingConfig["where"]]> = [
    [options.folder, "moe-config-path"],
    [options.vllmConfigsDir, "vllm"],
  ];
  for (const [dir, where] of places) {
    if (!dir) continue;
    for (const name of names) {
      const path = join(dir, name);
      if (await readable(path)) return { path, where };
    }
  }
  return undefined;
}

async function readable(path: string): Promise<boolean> {
  try {
    await access(path, constants.R_OK);
    return true;
  } catch {
    return false;
  }
}

/**
 * The Python that runs vLLM: XIM_PYTHON, else the interpreter the vLLM
 * launcher names on its `#!` line (a pip console script names its venv's
 * python), else python3 on PATH; undefined when that is not found.
 */
export async function resolvePython(vllmPath: string, env: Env): Promise<string | undefined> {
  if (env.XIM_PYTHON) return env.XIM_PYTHON;
  return (await which(await vllmPython(vllmPath, env), env)) ?? undefined;
}

/** Importing vllm to ask where it lives can take tens of seconds on a cold disk; past this, no answer. */
const PYTHON_PROBE_TIMEOUT_MS = 120_000;

/** The last `n` lines a tool printed, stderr after stdout (a tuner's error is its last words on stderr). */
function lastLines(stdout: string, stderr: string, n: number): string {
  const lines = (text: string) => text.split("\n").filter((line) => line.trim() !== "");
  return [...lines(stdout), ...lines(stderr)].slice(-n).join("\n");
}

/** Ask the installed vLLM where it keeps its shipped fused-MoE configs. */
export async function vllmShippedConfigsDir(
  python: string | undefined,
  env: Env,
): Promise<string | undefined> {
  if (env.XIM_VLLM_MOE_CONFIG_DIR) return env.XIM_VLLM_MOE_CONFIG_DIR;
  if (!python) return undefined;
  const r = await runTool(python, ["-c", "import os, vllm; print(os.path.dirname(vllm.__file__))"], {
    env,
    timeoutMs: PYTHON_PROBE_TIMEOUT_MS,
  });
  const dir = r.kind === "ok" ? r.stdout.trim().split("\n").at(-1) : undefined;
  return dir ? join(dir, "model_executor", "layers", "fused_moe", "configs") : undefined;
}

/**
 * The tuner command: XIM_MOE_TUNER (a command line; tests use a fake), else
 * the Python running benchmark_moe.py from XIM_MOE_BENCHMARK_SCRIPT, the
 * vLLM source tree, or /vllm-workspace (vLLM's container image).
 */
export async function resolveTuner(python: string | undefined, env: Env): Promise<string[]> {
  if (env.XIM_MOE_TUNER) return env.XIM_MOE_TUNER.split(/\s+/).filter(Boolean);
  if (!python) {
    throw new XimError("XIM_MOE_NO_PYTHON", "no Python with vLLM was found to run the MoE tuner", {
      hint: "set XIM_PYTHON to the python of the vLLM environment",
    });
  }
  const shipped = await vllmShippedConfigsDir(python, env);
  const candidates = [
    env.XIM_MOE_BENCHMARK_SCRIPT,
    shipped
      ? join(shipped, "..", "..", "..", "..", "..", "benchmarks", "kernels", "benchmark_moe.py")
      : undefined,
    "/vllm-workspace/benchmarks/kernels/benchmark_moe.py",
  ].filter((c): c is string => !!c);
  for (const c of candidates) if (await readable(c)) return [python, c];
  throw new XimError(
    "XIM_MOE_NO_TUNER",
    "vLLM's MoE tuner (benchmarks/kernels/benchmark_moe.py) was not found",
    {
      hint: `the pip package does not ship benchmarks/: fetch benchmarks/kernels/benchmark_moe.py from the vLLM release you run and set XIM_MOE_BENCHMARK_SCRIPT to it (looked in: ${candidates.join(", ")})`,
    },
  );
}

export interface TuneOptions {
  modelDir: string;
  config: TuneConfig;
  env: Env;
  /** The GPUs of this machine (planner's detectHardware); empty when none. */
  gpus: Gpu[];
  tensorParallelSize?: number;
  expertParallel?: boolean;
  force?: boolean;
  logger?: Logger;
  /** Each line the tuner prints. */
  onLine?: (line: string, stream: "stdout" | "stderr") => void;
  signal?: AbortSignal;
}

export type TuneOutcome =
  | { status: "dense"; message: string }
  | { status: "unsupported"; message: string }
  | { status: "existing"; message: string; tuning: MoeTuning; path: string; where: ExistingConfig["where"] }
  | { status: "tuned"; message: string; tuning: MoeTuning; path: string; batchSizes: number[] };

/** Everything before running the tuner: the model, the GPU, the file name, an existing config. */
export async function planTuning(options: TuneOptions & { gpuName?: string }) {
  const model = await readModelForTuning(options.modelDir);
  const gpuName = options.gpuName ?? options.gpus[0]?.name;
  const tp =
    options.tensorParallelSize ?? defaultTensorParallel(model.info, options.gpus.length, options.config);
  const moeOptions: MoeOptions = {
    expertParallel: options.expertParallel,
    quantizationOverride: options.config.vllmQuantization,
    quantizationConfig: model.quantizationConfig,
  };
  const result = moeTuningFor(model.info, gpuName ?? "unknown GPU", tp, moeOptions);
  return { model, gpuName, tp, result };
}

/** The GPU's name, which the config's file name carries: without a GPU nothing can be measured. */
function requireGpuName(gpuName: string | undefined): string {
  if (gpuName) return gpuName;
  throw new XimError(
    "XIM_NO_GPU",
    "no GPU was detected: the MoE tuner measures kernels on the GPU that will serve, so nothing was generated",
    {
      hint: "run xim tune-moe on the GPU machine (xim tune-moe --print-name --gpu-name NAME shows the file name without a GPU)",
    },
  );
}

/** A config already in XEROTIER_AGENT_MOE_CONFIG_PATH or shipped with vLLM, as the outcome to return. */
async function existingOutcome(
  tuning: MoeTuning,
  gpuName: string,
  find: FindOptions,
): Promise<TuneOutcome | undefined> {
  const existing = await findExistingConfig(tuning, gpuName, find);
  if (!existing) return undefined;
  const where =
    existing.where === "vllm" ? "shipped with the installed vLLM" : "in XEROTIER_AGENT_MOE_CONFIG_PATH";
  return {
    status: "existing",
    tuning,
    path: existing.path,
    where: existing.where,
    message: `a tuned config for this model and GPU already exists (${where}): ${existing.path}; --force tunes again`,
  };
}

/** Run vLLM's benchmark_moe.py --tune, writing into saveDir; fails with the tuner's last lines. */
async function runTuner(
  options: TuneOptions,
  job: { tuning: MoeTuning; model: ModelForTuning; python: string | undefined; saveDir: string },
): Promise<void> {
  const { tuning, saveDir } = job;
  const tuner = await resolveTuner(job.python, options.env);
  const args = [
    ...tuner.slice(1),
    "--model",
    options.modelDir,
    "--tp-size",
    String(tuning.tensorParallelSize),
    "--dtype",
    tuning.benchmarkDtype,
    "--tune",
    "--save-dir",
    saveDir,
    ...(tuning.expertParallel ? ["--enable-expert-parallel"] : []),
    ...(job.model.customCode ? ["--trust-remote-code"] : []),
  ];
  options.logger?.info(
    { command: [tuner[0], ...args].join(" ") },
    "running vLLM's MoE tuner (this can take an hour or more)",
  );
  // No time limit (a tuning run takes hours); the caller's signal stops it, with its whole process group.
  const r = await runTool(tuner[0], args, {
    env: options.env,
    cwd: saveDir,
    onLine: options.onLine,
    signal: options.signal,
    timeoutMs: Number.POSITIVE_INFINITY,
  });
  if (r.kind === "ok") return;
  if (r.kind === "missing") {
    throw new XimError("XIM_MOE_TUNER_FAILED", `the MoE tuner could not start: ${r.reason}`, {
      hint: "set XIM_PYTHON to the python of the vLLM environment",
    });
  }
  if (r.kind === "timeout") {
    throw new XimError("XIM_MOE_TUNER_FAILED", "the MoE tuner was stopped before it finished", {
      hint: "nothing was stored; run `xim tune-moe` again to tune",
    });
  }
  const why = r.exitCode === null ? r.reason : `code ${r.exitCode}`;
  throw new XimError(
    "XIM_MOE_TUNER_FAILED",
    `the MoE tuner exited with ${why}:\n${lastLines(r.stdout, r.stderr, 8)}`,
    { hint: "the lines above are the tuner's last output; nothing was stored" },
  );
}

/** The config file the tuner wrote: the expected name, else its only JSON file. */
async function tunerOutputName(saveDir: string, tuning: MoeTuning): Promise<string> {
  const written = (await readdir(saveDir)).filter((f) => f.endsWith(".json"));
  const chosen =
    written.find((f) => f === tuning.fileName) ?? (written.length === 1 ? written[0] : undefined);
  if (chosen) return chosen;
  throw new XimError(
    "XIM_MOE_TUNER_FAILED",
    written.length === 0
      ? "the MoE tuner finished but wrote no config file"
      : `the MoE tuner wrote ${written.join(", ")}, none of them ${tuning.fileName}`,
    { hint: "nothing was stored" },
  );
}

/** Read and validate what the tuner wrote (bounded: it is a file another program produced). */
async function readTunerOutput(
  saveDir: string,
  chosen: string,
): Promise<v.InferOutput<typeof MoeConfigFileSchema>> {
  let parsedJson: unknown;
  try {
    parsedJson = JSON.parse(
      await readTextBounded(join(saveDir, chosen), {
        what: "the MoE tuner's output",
        maxBytes: FileLimits.moeConfig,
      }),
    );
  } catch (err) {
    if (isXimError(err)) throw err;
    throw new XimError("XIM_MOE_BAD_CONFIG", `the MoE tuner wrote ${chosen}, which is not JSON`, {
      cause: err,
      hint: "nothing was stored",
    });
  }
  const checked = v.safeParse(MoeConfigFileSchema, parsedJson);
  if (checked.success) return checked.output;
  throw new XimError(
    "XIM_MOE_BAD_CONFIG",
    `the MoE tuner wrote ${chosen}, which is not a valid fused-MoE config: ${checked.issues.map((i) => i.message).join("; ")}`,
    { hint: "nothing was stored; rerun with --force after checking the tuner's output" },
  );
}

/** Tune in a private temporary folder, then store the validated config atomically in `folder`. */
async function tuneAndStore(
  options: TuneOptions,
  job: { tuning: MoeTuning; model: ModelForTuning; python: string | undefined; folder: string },
): Promise<TuneOutcome> {
  const { tuning, folder } = job;
  const saveDir = await mkdtemp(join(tmpdir(), "xim-moe-tune-"));
  try {
    await runTuner(options, { ...job, saveDir });
    const chosen = await tunerOutputName(saveDir, tuning);
    const config = await readTunerOutput(saveDir, chosen);
    if (chosen !== tuning.fileName) {
      options.logger?.warn(
        { expected: tuning.fileName, written: chosen },
        "the tuner named its config differently from xim's computation; storing it under the tuner's name, which is the one vLLM looks up",
      );
    }
    const target = join(folder, chosen);
    await writeFileAtomic(target, `${JSON.stringify(config, null, 4)}\n`, { mode: 0o644 });
    const batchSizes = Object.keys(config)
      .filter((k) => k !== "triton_version")
      .map(Number)
      .sort((a, b) => a - b);
    return {
      status: "tuned",
      tuning,
      path: target,
      batchSizes,
      message: `stored a tuned config for ${batchSizes.length} batch sizes at ${target}`,
    };
  } finally {
    await rm(saveDir, { recursive: true, force: true });
  }
}

export async function tuneMoe(options: TuneOptions): Promise<TuneOutcome> {
  const { model, gpuName, result } = await planTuning(options);
  if (result.kind === "dense")
    return { status: "dense", message: "not a Mixture-of-Experts model, nothing to tune" };
  if (result.kind === "unsupported")
    return { status: "unsupported", message: `nothing to tune: ${result.reason}` };
  const tuning = result.tuning;
  const folder = moeConfigFolder(options.config);
  const gpu = requireGpuName(gpuName);
  const python = await resolvePython(options.config.vllmPath, options.env);
  if (!options.force) {
    const vllmConfigsDir = await vllmShippedConfigsDir(python, options.env);
    const existing = await existingOutcome(tuning, gpu, { folder, vllmConfigsDir });
    if (existing) return existing;
  }
  refuseBusyGpus(options.gpus);
  await mkdir(folder, { recursive: true, mode: 0o755 });
  const lock = await acquireLock(join(folder, `.${tuning.fileName}.lock`), {
    what: `MoE tuning of ${tuning.fileName}`,
    wait: false,
  });
  try {
    return await tuneAndStore(options, { tuning, model, python, folder });
  } finally {
    await lock.release();
  }
}

/**
 * A GPU with more than this share of its memory in use is held by another
 * process (most often a running vLLM, which reserves 90%): the tuner
 * beside it would compete for memory and measure kernels slowed by it.
 */
export const BUSY_GPU_USED_FRACTION = 0.5;

/** Refuse to tune on GPUs another process holds (XIM_MOE_GPU_BUSY, naming them). */
function refuseBusyGpus(gpus: readonly Gpu[]): void {
  const busy = gpus.filter(
    (g) =>
      g.memoryFreeMiB !== null &&
      g.memoryTotalMiB - g.memoryFreeMiB > g.memoryTotalMiB * BUSY_GPU_USED_FRACTION,
  );
  if (busy.length === 0) return;
  const named = busy
    .map(
      (g) =>
        `GPU ${g.index} (${g.memoryTotalMiB - (g.memoryFreeMiB as number)} of ${g.memoryTotalMiB} MiB in use)`,
    )
    .join(", ");
  throw new XimError(
    "XIM_MOE_GPU_BUSY",
    `${named}: another process (a running engine?) holds it, and the MoE tuner beside it would compete for its memory and measure kernels slowed by it, so it was not started`,
    {
      hint: "stop the engine on that GPU first (xim run's own tuning uses only GPUs its engine does not), or make idle GPUs of the same model visible with CUDA_VISIBLE_DEVICES",
    },
  );
}

/**
 * Where `xim run` may tune beside its engine: GPUs of the serving model
 * (the tuned config's file name carries the GPU name) that the engine does
 * not use. The engine takes the first `tensorParallelSize` visible GPUs.
 */
export function spareGpus(gpus: readonly Gpu[], tensorParallelSize: number, gpuName: string): Gpu[] {
  return gpus.slice(Math.max(1, tensorParallelSize)).filter((g) => g.name === gpuName);
}

/** CUDA_VISIBLE_DEVICES for those GPUs: UUIDs when known, else nvidia-smi indices in PCI bus order. */
function visibleDevices(gpus: readonly Gpu[]): Record<string, string> {
  return {
    CUDA_DEVICE_ORDER: "PCI_BUS_ID",
    CUDA_VISIBLE_DEVICES: gpus.map((g) => g.uuid ?? String(g.index)).join(","),
  };
}

export interface RunMoeSetup {
  /** Environment for the engine: VLLM_TUNED_CONFIG_FOLDER when it applies. */
  env: Record<string, string>;
  tuning?: MoeTuning;
  /** A tuning run started in the background, when no config existed. */
  background?: Promise<TuneOutcome | undefined>;
  /** Why no tuning was started although no config exists (it would have competed with the engine). */
  skipped?: string;
}

/**
 * What `xim run` does for MoE models when XEROTIER_AGENT_MOE_CONFIG_ENABLED
 * (and XEROTIER_AGENT_AUTO_CONFIG) is on: point vLLM at the config folder
 * and, when this GPU has no config for the model, start the tuner in the
 * background (never awaited by serving; a new config is used from the
 * engine's next start) on GPUs of the same model the engine does not use
 * (CUDA_VISIBLE_DEVICES). When the engine uses them all, tuning is not
 * started and `skipped` (also logged) says why and what to run instead:
 * the tuner and vLLM never share a GPU. Disabled, dense or unsupported:
 * nothing set, nothing started.
 */
export async function prepareMoeForRun(
  options: Omit<TuneOptions, "force"> & {
    config: TuneConfig & Pick<Config, "moeConfigEnabled">;
    tuneInBackground?: boolean;
  },
): Promise<RunMoeSetup> {
  // XEROTIER_AGENT_AUTO_CONFIG=0 turns every automatic step off, tuning among them.
  if (!options.config.moeConfigEnabled || !options.config.autoConfig) return { env: {} };
  const { gpuName, result } = await planTuning(options);
  if (result.kind !== "moe" || !gpuName) return { env: {} };
  const folder = moeConfigFolder(options.config);
  await mkdir(folder, { recursive: true, mode: 0o755 });
  const setup: RunMoeSetup = { env: { VLLM_TUNED_CONFIG_FOLDER: folder }, tuning: result.tuning };
  if (options.tuneInBackground === false) return setup;
  const python = await resolvePython(options.config.vllmPath, options.env);
  const existing = await findExistingConfig(result.tuning, gpuName, {
    folder,
    vllmConfigsDir: await vllmShippedConfigsDir(python, options.env),
  });
  if (existing) return setup;
  const log = options.logger?.child({ component: "moe-tune" });
  // The tuner never shares a GPU with the engine: only GPUs outside the engine's group, else not at all.
  const tp = options.tensorParallelSize ?? 1;
  const spare = spareGpus(options.gpus, tp, gpuName);
  if (spare.length === 0) {
    setup.skipped = `no tuned config for ${result.tuning.fileName}, and the engine uses ${tp === 1 ? "the GPU" : `${tp} GPUs`} of the ${options.gpus.length} ${gpuName} here: tuning beside it would compete for GPU memory and measure kernels slowed by serving, so it was not started (vLLM uses its default kernel config). Run \`xim tune-moe --model ${options.modelDir}\` while the node is stopped; the engine uses the config from its next start.`;
    log?.warn({ fileName: result.tuning.fileName }, setup.skipped);
    return setup;
  }
  const devices = visibleDevices(spare);
  log?.info(
    { gpus: spare.map((g) => g.index), CUDA_VISIBLE_DEVICES: devices.CUDA_VISIBLE_DEVICES },
    "tuning MoE kernels in the background on GPUs the engine does not use",
  );
  setup.background = tuneMoe({
    ...options,
    gpus: spare,
    env: { ...options.env, ...devices },
    onLine: (line) => log?.debug({ line }, "tuner"),
  }).then(
    (outcome) => {
      log?.info(
        { outcome: outcome.status, path: "path" in outcome ? outcome.path : undefined },
        outcome.message,
      );
      return outcome;
    },
    (err: unknown) => {
      log?.warn({ err }, "background MoE tuning failed; serving continues with vLLM's default kernel config");
      return undefined;
    },
  );
  return setup;
}
