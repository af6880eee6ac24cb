/**
 * @module `xim run`: enroll on first start when a join key is set, register,
 * then start the engine (vLLM with the planner's command, or the simulated
 * engine), hold the lease with the router and relay inference
 * (src/agent/node.ts). SIGTERM drains (in-flight streams get
 * XEROTIER_AGENT_DRAIN_GRACE_SECONDS), a second cancels them and stops, a
 * third exits at once (src/agent/stop-signals.ts).
 * A model the router assigns (`xim router models assign`) is pulled with
 * the code of `xim pull` and then replaces the engine.
 * `--dry-run` prints what would be started and starts nothing.
 */
import { describeAssignedLaunch, describeLaunch } from "../agent/engine-setup.ts";
import { runInferenceNode } from "../agent/node.ts";
import { StopSignals } from "../agent/stop-signals.ts";
import { type SettingKey, settings } from "../core/config/schema.ts";
import { ExitCode } from "../core/errors.ts";
import { logUnhandledRejections } from "../core/guard.ts";
import { shownVllmCommand } from "../engine/vllm-args.ts";
import { deriveMaxConcurrent } from "../planner/max-concurrent.ts";
import { explicitSettings } from "../planner/plan.ts";
import { raiseSocketBuffersOnce } from "../transport/socket-buffers.ts";
import { defineCommand } from "./command.ts";
import { switchOption } from "./options.ts";
import { formatPlan, planToJson } from "./plan-format.ts";

/** What --dry-run says of the engine's key: that there is one, never its value (it does not exist yet). */
const ENGINE_KEY_NOTE =
  "VLLM_API_KEY in the engine's environment, generated at each engine start (not shown); /v1 answers only the node";

export const runCommand = defineCommand({
  name: "run",
  summary: "Run the node: engine, lease and inference relay",
  description:
    "Enrolls on first start when XEROTIER_AGENT_JOIN_KEY is set, registers with the router, then starts the engine (XEROTIER_AGENT_ENGINE=sim runs the simulated engine, no GPU needed) and serves the router's requests; a node that cannot enroll or reach its router never starts the engine. Without XEROTIER_AGENT_INITIAL_MODEL_PATH (vLLM) it registers without an engine and waits for the router to assign a model (xim router models assign): the node pulls it into the model cache while serving, reports the progress to the router, then starts (or replaces) the engine with it. SIGTERM drains: the router stops sending requests, in-flight streams finish within XEROTIER_AGENT_DRAIN_GRACE_SECONDS, then the engine stops and xim exits 0. A second SIGTERM cancels the streams still running and stops; a third exits at once with code 130.",
  settings: Object.keys(settings) as SettingKey[],
  commonSettings: [
    "joinKey",
    "routerUrl",
    "configDir",
    "engine",
    "initialModelPath",
    "servedModelName",
    "maxConcurrent",
    "gpuMemoryUtilization",
    "maxModelLen",
    "logLevel",
  ],
  options: {
    dryRun: switchOption("--dry-run", "print the engine plan (command, environment, decisions) and exit"),
    json: switchOption("--json", "with --dry-run: print JSON for scripts"),
  },
  examples: [
    "xim run",
    "XEROTIER_AGENT_JOIN_KEY=xjk_... xim run   # first start enrolls, later starts reconnect",
    "XEROTIER_AGENT_ENGINE=sim xim run          # the simulated engine: no GPU needed",
    "xim run --dry-run --initial-model-path /data/models/Qwen3-8B",
  ],
  async run(ctx) {
    const loaded = ctx.config();
    const { config } = loaded;
    if (ctx.options.dryRun) {
      const launch = await describeLaunch(loaded, ctx.io.env);
      const maxConcurrent = deriveMaxConcurrent(config, launch?.plan?.maxConcurrent, launch?.hardware?.gpus);
      // Built by the code that starts the engine, so what is shown is what runs.
      const command = launch?.plan
        ? shownVllmCommand(config, {
            model: launch.model,
            servedModelName: launch.servedModelName,
            plan: launch.plan,
          })
        : undefined;
      if (ctx.options.json) {
        ctx.io.stdout(
          `${JSON.stringify(
            launch
              ? {
                  engine: launch.engine,
                  model: launch.model,
                  servedModelName: launch.servedModelName,
                  maxConcurrent,
                  engineApiKey: ENGINE_KEY_NOTE,
                  plan: launch.plan ? planToJson(launch.plan) : null,
                  command: command ? { file: command.file, args: command.args, env: command.env } : null,
                }
              : {
                  engine: null,
                  reason: "no XEROTIER_AGENT_INITIAL_MODEL_PATH: the node would wait for a model",
                },
            null,
            2,
          )}\n`,
        );
      } else if (!launch) {
        ctx.io.stdout(
          "Nothing to serve yet: XEROTIER_AGENT_INITIAL_MODEL_PATH is not set, so the node would register and wait for a model.\n",
        );
      } else if (launch.plan) {
        ctx.io.stdout(`Model: ${launch.model} (served as ${launch.servedModelName})\n\n`);
        ctx.io.stdout(formatPlan(launch.plan, { command }));
        ctx.io.stdout(`Engine API key: ${ENGINE_KEY_NOTE}\n`);
      } else {
        ctx.io.stdout(
          `Engine: simulated (xim engine-sim), served as ${launch.servedModelName}\nMax concurrent requests: ${maxConcurrent}\nEngine API key: ${ENGINE_KEY_NOTE}\n`,
        );
      }
      for (const w of [...loaded.warnings, ...(command?.warnings ?? [])]) ctx.io.stderr(`warning: ${w}\n`);
      return ExitCode.ok;
    }
    const logger = ctx.logger();
    // Before any socket exists: the limits cap the buffers at creation. XIM_PROC_ROOT: a fake tree (tests).
    await raiseSocketBuffersOnce(logger, ctx.io.env.XIM_PROC_ROOT || "/proc");
    // Refuses at start-up when XEROTIER_AGENT_INITIAL_MODEL_PATH is missing or holds no model.
    const launch = await describeLaunch(loaded, ctx.io.env);
    const signals = new StopSignals(logger, (code) => process.exit(code));
    const stopListening = signals.listen();
    const stopBackstop = logUnhandledRejections(logger);
    try {
      await runInferenceNode({
        config,
        logger,
        launch,
        signal: signals.drain,
        hardStop: signals.now,
        env: ctx.io.env,
        launchFor: (model) => describeAssignedLaunch(config, explicitSettings(loaded), ctx.io.env, model),
      });
      return ExitCode.ok;
    } finally {
      stopBackstop();
      stopListening();
    }
  },
});
