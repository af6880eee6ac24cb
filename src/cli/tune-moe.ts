/**
 * @module `xim tune-moe --model DIR`: for a Mixture-of-Experts model, name
 * the tuned fused-MoE config vLLM looks for on this GPU (--print-name), say
 * where one already exists, or produce one with vLLM's own tuner and store
 * it in XEROTIER_AGENT_MOE_CONFIG_PATH.
 */
import { ExitCode, UsageError, XimError } from "../core/errors.ts";
import { detectHardware } from "../hardware/detect.ts";
import { moeConfigFolder } from "../models/moe.ts";
import { planTuning, type TuneOutcome, tuneMoe } from "../models/tune.ts";
import { defineCommand } from "./command.ts";
import { jsonOption, switchOption, textOption } from "./options.ts";

export const tuneMoeCommand = defineCommand({
  name: "tune-moe",
  summary: "Find or produce tuned fused-MoE kernel configs",
  description: `For a Mixture-of-Experts model, vLLM looks for a kernel config named
  E=<experts>,N=<per-GPU intermediate size>,device_name=<GPU>[,dtype=...][,block_shape=[a,b]].json
first in VLLM_TUNED_CONFIG_FOLDER, then among the configs it ships. This command computes
that name, reports a config that already exists, or runs vLLM's tuner
(benchmarks/kernels/benchmark_moe.py --tune) on this machine's GPUs, validates its output
and stores it in XEROTIER_AGENT_MOE_CONFIG_PATH, which \`xim run\` gives to vLLM.
Tuning needs a GPU and takes a long time; without a GPU nothing is generated.

Environment: XIM_PYTHON (the vLLM environment's python; default: the interpreter of the
vLLM launcher), XIM_MOE_BENCHMARK_SCRIPT (benchmark_moe.py when vLLM's source tree is
not installed), XIM_MOE_TUNER (a whole tuner command line, replacing both).`,
  settings: [
    "tensorParallelSize",
    "moeConfigPath",
    "modelCacheDir",
    "vllmPath",
    "vllmQuantization",
    "logLevel",
  ],
  options: {
    model: textOption("--model <dir>", "the model folder (config.json)"),
    printName: switchOption("--print-name", "print the config file name vLLM looks for, and stop"),
    force: switchOption("--force", "tune even when a config already exists"),
    gpuName: textOption(
      "--gpu-name <name>",
      "with --print-name: the GPU's name (as nvidia-smi prints it) instead of detecting it",
    ),
    enableExpertParallel: switchOption(
      "--enable-expert-parallel",
      "the engine runs with expert parallelism (E per GPU, N whole)",
    ),
    json: jsonOption,
  },
  examples: [
    "xim tune-moe --model /data/models/Mixtral-8x7B-Instruct-v0.1 --print-name",
    "xim tune-moe --model /data/models/Qwen3-30B-A3B --print-name --gpu-name 'NVIDIA H100 80GB HBM3' --tensor-parallel-size 2",
    "xim tune-moe --model /data/models/DeepSeek-V3 --tensor-parallel-size 8",
    "XIM_MOE_BENCHMARK_SCRIPT=~/vllm/benchmarks/kernels/benchmark_moe.py xim tune-moe --model ./model --force",
  ],
  async run(ctx) {
    const modelDir = ctx.options.model;
    if (modelDir === undefined)
      throw new UsageError("xim tune-moe needs --model DIR", "give the model folder that holds config.json");
    const loaded = ctx.config();
    const { config } = loaded;
    // A --tensor-parallel-size given here wins; otherwise the planner's choice for this machine.
    const explicitTp =
      loaded.sources.tensorParallelSize.kind === "flag" ? config.tensorParallelSize : undefined;
    const json = ctx.options.json === true;
    const gpuOverride = ctx.options.gpuName;
    if (gpuOverride && !ctx.options.printName) {
      throw new UsageError(
        "--gpu-name only goes with --print-name",
        "tuning measures the GPUs of this machine",
      );
    }
    const gpus = gpuOverride ? [] : (await detectHardware({ env: ctx.io.env, skipGpu: false })).gpus;
    const base = {
      modelDir,
      config,
      env: ctx.io.env,
      gpus,
      tensorParallelSize: explicitTp,
      expertParallel: ctx.options.enableExpertParallel === true,
    };
    const print = (outcome: Record<string, unknown> & { message: string }) => {
      if (json) ctx.io.stdout(`${JSON.stringify(outcome, null, 2)}\n`);
      else ctx.io.stdout(`${outcome.message}\n`);
    };

    if (ctx.options.printName) {
      const { result, gpuName } = await planTuning({ ...base, gpuName: gpuOverride });
      if (result.kind === "dense") {
        print({ status: "dense", message: "not a Mixture-of-Experts model, nothing to tune" });
        return ExitCode.ok;
      }
      if (result.kind === "unsupported") {
        print({ status: "unsupported", message: `nothing to tune: ${result.reason}` });
        return ExitCode.ok;
      }
      if (!gpuName) {
        throw new XimError(
          "XIM_NO_GPU",
          "no GPU was detected, so the device part of the file name is unknown",
          {
            hint: "give the GPU's name: --gpu-name 'NVIDIA H100 80GB HBM3'",
          },
        );
      }
      if (json)
        print({
          status: "name",
          message: result.tuning.fileName,
          gpu: gpuName,
          folder: moeConfigFolder(config),
          ...result.tuning,
        });
      else ctx.io.stdout(`${result.tuning.fileName}\n`);
      return ExitCode.ok;
    }

    const logger = ctx.logger();
    const outcome: TuneOutcome = await tuneMoe({
      ...base,
      force: ctx.options.force === true,
      logger,
      onLine: (line) => ctx.io.stderr(`${line}\n`),
    });
    print(outcome);
    return ExitCode.ok;
  },
});
