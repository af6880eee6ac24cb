/**
 * @module `xim plan --model PATH`: detects the hardware, reads the model
 * folder and prints the plan the engine would start with: the exact vLLM
 * command line and environment, each decision with its reason, the files
 * it would write and the warnings. Nothing is started or written.
 * `--json` prints { model, hardware, plan, command } for scripts (secrets
 * masked); `command` is the argv and environment as they will run.
 */
import { basename, resolve } from "node:path";
import { type SettingKey, settings } from "../core/config/schema.ts";
import { ExitCode, UsageError } from "../core/errors.ts";
import { shownVllmCommand } from "../engine/vllm-args.ts";
import { explicitSettings, preparePlan } from "../planner/plan.ts";
import { defineCommand } from "./command.ts";
import { switchOption, textOption } from "./options.ts";
import { formatPlan, planToJson } from "./plan-format.ts";

export const planCommand = defineCommand({
  name: "plan",
  summary:
    "Print the engine plan for a model on this machine: the exact vLLM argv, environment and the reason for each choice",
  description:
    "Runs the same hardware detection, model inspection and auto-configuration as `xim run`, then prints the result instead of starting vLLM. Every configuration setting is accepted as a flag, so `xim plan --model /m --tensor-parallel-size 2 --auto-configure-gpu 0` shows what those settings would do.",
  settings: Object.keys(settings) as SettingKey[],
  commonSettings: [
    "engine",
    "gpuMemoryUtilization",
    "maxModelLen",
    "tensorParallelSize",
    "vllmQuantization",
    "kvCacheBackend",
    "speculativeEnabled",
  ],
  options: {
    model: textOption(
      "--model <path>",
      "the local model folder (config.json and weights); default XEROTIER_AGENT_INITIAL_MODEL_PATH",
    ),
    json: switchOption("--json", "print JSON for scripts: { model, hardware, plan, command }"),
  },
  examples: [
    "xim plan --model /data/models/Llama-3.1-70B-Instruct",
    "xim plan --model ./mixtral --quantization fp8",
    "XEROTIER_AGENT_SPECULATIVE_ENABLED=1 xim plan --model /data/models/DeepSeek-V3 --json | jq .plan.args",
  ],
  async run(ctx) {
    const loaded = ctx.config();
    const given = ctx.options.model ?? loaded.config.initialModelPath;
    if (!given) {
      throw new UsageError(
        "xim plan needs a model folder",
        "pass --model PATH or set XEROTIER_AGENT_INITIAL_MODEL_PATH",
      );
    }
    const modelDir = resolve(ctx.io.cwd, given);
    const { plan, hardware, model } = await preparePlan({
      modelDir,
      config: loaded.config,
      explicit: explicitSettings(loaded),
      env: ctx.io.env,
    });
    // Built by the code that starts the engine, so what is shown is what runs.
    const command = shownVllmCommand(loaded.config, {
      model: modelDir,
      servedModelName: loaded.config.servedModelName ?? basename(modelDir),
      plan,
    });
    if (ctx.options.json) {
      ctx.io.stdout(
        `${JSON.stringify({ model, hardware, plan: planToJson(plan), command: { file: command.file, args: command.args, env: command.env } }, null, 2)}\n`,
      );
      return ExitCode.ok;
    }
    const gpus = hardware.gpus.length
      ? `${hardware.gpus.length}x ${hardware.gpus[0].name} (${hardware.topology.detail})`
      : `no GPU; ${hardware.cpu ? `${hardware.cpu.model}, ${hardware.cpu.physicalCores} cores` : "CPU unknown"}`;
    ctx.io.stdout(`Hardware: ${gpus}\nModel: ${model.architecture} in ${modelDir}\n\n`);
    ctx.io.stdout(formatPlan(plan, { command }));
    for (const w of [...loaded.warnings, ...command.warnings]) ctx.io.stderr(`warning: ${w}\n`);
    return ExitCode.ok;
  },
});
