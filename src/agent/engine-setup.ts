/**
 * @module What `xim run` serves and how: from the configuration to a
 * supervised engine. For vLLM it validates the initial model folder,
 * detects the hardware, inspects the model and asks the planner for the
 * exact command (src/planner), points vLLM at the tuned MoE kernels and
 * starts their tuning in the background when missing (src/models/tune.ts),
 * walks the CUDA-graph mitigation ladder when the engine fails to
 * capture graphs, and falls back (n-gram speculation, no LMCache) when vLLM
 * refuses what the plan asked of it (planner/fallback.ts). For the simulated engine none of that applies.
 * `describeLaunch` is side-effect free (it backs `xim run --dry-run`);
 * `createLaunchEngine` writes the plan's files and builds the supervisor.
 */
import { basename } from "node:path";
import type { LoadedConfig } from "../core/config/load.ts";
import type { Config, SettingKey } from "../core/config/schema.ts";
import type { Logger } from "../core/log.ts";
import { createEngine } from "../engine/create.ts";
import { validateInitialModelPath } from "../engine/initial-model.ts";
import type { Supervisor } from "../engine/supervisor.ts";
import type { Hardware } from "../hardware/types.ts";
import { moeConfigFolder } from "../models/moe.ts";
import { prepareMoeForRun } from "../models/tune.ts";
import { fallbackAfterFailure } from "../planner/fallback.ts";
import { explicitSettings, nextMitigation, type Plan, preparePlan, writePlanFiles } from "../planner/plan.ts";

export const SIM_MODEL_NAME = "xim-sim";

export interface Launch {
  engine: Config["engine"];
  /** Model folder (or the simulator's root name). */
  model: string;
  servedModelName: string;
  /** The planner's decisions (vLLM only). */
  plan?: Plan;
  hardware?: Hardware;
}

type Env = Record<string, string | undefined>;

/**
 * Decide what to serve without starting anything. Returns undefined when
 * there is nothing to serve yet (vLLM without XEROTIER_AGENT_INITIAL_MODEL_PATH:
 * the node registers and waits for the router to assign a model).
 */
export async function describeLaunch(loaded: LoadedConfig, env: Env): Promise<Launch | undefined> {
  const { config } = loaded;
  if (config.engine === "sim") {
    const served =
      config.servedModelName ??
      (config.initialModelPath ? basename(config.initialModelPath) : SIM_MODEL_NAME);
    return { engine: "sim", model: config.initialModelPath ?? served, servedModelName: served };
  }
  if (!config.initialModelPath) return undefined;
  const local = await validateInitialModelPath(config.initialModelPath);
  const { plan, hardware } = await preparePlan({
    modelDir: local.path,
    config,
    explicit: explicitSettings(loaded),
    env,
    moeTunedConfigDir: moeConfigFolder(config),
  });
  return {
    engine: "vllm",
    model: local.path,
    servedModelName: config.servedModelName ?? basename(local.path),
    plan,
    hardware,
  };
}

/**
 * What to serve for a model the router assigned (pulled and verified into
 * the cache at `path`): served under the assigned `name`, planned like an
 * initial model for vLLM. `explicit`: the settings the operator set (the
 * planner keeps those as given).
 */
export async function describeAssignedLaunch(
  config: Config,
  explicit: Set<SettingKey>,
  env: Env,
  model: { name: string; path: string },
): Promise<Launch> {
  if (config.engine === "sim") return { engine: "sim", model: model.path, servedModelName: model.name };
  const assigned: Config = { ...config, initialModelPath: model.path, servedModelName: model.name };
  const { plan, hardware } = await preparePlan({
    modelDir: model.path,
    config: assigned,
    explicit,
    env,
    moeTunedConfigDir: moeConfigFolder(config),
  });
  return { engine: "vllm", model: model.path, servedModelName: model.name, plan, hardware };
}

export interface LaunchEngine {
  engine: Supervisor;
  /** The plan in force now (it changes as CUDA-graph mitigations are applied). */
  currentPlan: () => Plan | undefined;
  /** Background MoE tuning, when one was started. */
  moeTuning?: Promise<unknown>;
  /** What a restart changed (planner/fallback.ts), by restart number: for the report to the router. */
  fallbackAt: (restarts: number) => string | undefined;
}

export async function createLaunchEngine(
  launch: Launch,
  config: Config,
  options: { logger: Logger; env: Env; gpuProbe?: () => Promise<string | undefined> },
): Promise<LaunchEngine> {
  const log = options.logger.child({ component: "engine" });
  let plan = launch.plan ? await writePlanFiles(launch.plan) : undefined;
  for (const warning of plan?.warnings ?? []) log.warn(warning);
  let moeTuning: Promise<unknown> | undefined;
  if (plan && launch.hardware) {
    const moe = await prepareMoeForRun({
      modelDir: launch.model,
      config,
      env: options.env,
      gpus: launch.hardware.gpus,
      tensorParallelSize: plan.tensorParallelSize,
      logger: options.logger,
    });
    moeTuning = moe.background;
  }
  // The supervisor rebuilds the command at every start, so a live view of
  // the current plan lets a restart pick up the next mitigation.
  const livePlan = plan
    ? {
        get args() {
          return (plan as Plan).args;
        },
        get env() {
          return (plan as Plan).env;
        },
      }
    : undefined;
  const engine = createEngine(config, {
    model: launch.model,
    servedModelName: launch.servedModelName,
    logger: options.logger,
    plan: livePlan,
    env: options.env,
    supervisor: { gpuProbe: options.gpuProbe },
  });
  const fallbacks = new Map<number, string>();
  engine.on("restart", ({ failure, restarts }) => {
    if (!plan) return;
    const fallback = fallbackAfterFailure(plan, failure, config);
    if (fallback) {
      log.warn({ cause: failure.cause, evidence: failure.evidence }, fallback.note);
      fallbacks.set(restarts, fallback.note);
      plan = fallback.plan;
      return;
    }
    const next = nextMitigation(plan, failure.cause);
    if (next) {
      const added = next.args.filter((a) => !(plan as Plan).args.includes(a));
      log.warn(
        {
          cause: failure.cause,
          added,
          env: next.env.NCCL_P2P_DISABLE ? { NCCL_P2P_DISABLE: "1" } : undefined,
        },
        "applying the next CUDA graph mitigation for the restart",
      );
      plan = next;
    }
  });
  return { engine, currentPlan: () => plan, moeTuning, fallbackAt: (n) => fallbacks.get(n) };
}
