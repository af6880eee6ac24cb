/**
 * @module The engine `xim run` supervises, from the configuration:
 * XEROTIER_AGENT_ENGINE=vllm runs XEROTIER_AGENT_VLLM_PATH as
 * `serve <model> ...` (vllm-args.ts); =sim runs this same executable as
 * `xim engine-sim`, and XEROTIER_AGENT_VLLM_ARGS then go to the simulator
 * (e.g. `--ttft-ms 50 --itl-ms 10 --output-tokens 64`).
 */
import type { Config } from "../core/config/schema.ts";
import type { Logger } from "../core/log.ts";
import { type EngineEndpoint, nextEndpoint } from "./endpoint.ts";
import { selfCommand } from "./self-command.ts";
import { Supervisor, type SupervisorOptions } from "./supervisor.ts";
import {
  buildVllmCommand,
  childEnv,
  type EngineCommand,
  type EnginePlan,
  type VllmSettings,
} from "./vllm-args.ts";

export type EngineSettings = VllmSettings &
  Pick<Config, "engine" | "engineStartupTimeoutSeconds" | "vllmSocketPath">;

export interface SimTiming {
  loadTimeMs?: number;
  ttftMs?: number;
  itlMs?: number;
  outputTokens?: number;
}

export interface CreateEngineOptions {
  /** A model folder or Hugging Face id (vLLM's model_tag; the simulator reports it as `root`). */
  model: string;
  servedModelName: string;
  logger: Logger;
  /** The planner's arguments and environment for vLLM. */
  plan?: EnginePlan;
  /** Timing of the simulated engine (engine=sim). */
  sim?: SimTiming;
  /** Tuning of the supervision loop (tests shorten it). */
  supervisor?: Partial<Omit<SupervisorOptions, "kind" | "servedModelName" | "command" | "logger">>;
  env?: Record<string, string | undefined>;
}

/** The `xim engine-sim` command line for one run on `endpoint`. */
export function simCommand(
  settings: Pick<Config, "vllmArgs" | "vllmEnv">,
  options: Pick<CreateEngineOptions, "model" | "servedModelName" | "sim" | "env">,
  endpoint: EngineEndpoint,
): EngineCommand {
  const self = selfCommand();
  const address =
    "socketPath" in endpoint
      ? ["--uds", endpoint.socketPath]
      : ["--host", endpoint.host, "--port", String(endpoint.port)];
  const args = [
    ...self.prefix,
    "engine-sim",
    ...address,
    "--model",
    options.servedModelName,
    "--root",
    options.model,
    "--exit-on-stdin-close",
  ];
  const t = options.sim ?? {};
  if (t.loadTimeMs !== undefined) args.push("--load-time-ms", String(t.loadTimeMs));
  if (t.ttftMs !== undefined) args.push("--ttft-ms", String(t.ttftMs));
  if (t.itlMs !== undefined) args.push("--itl-ms", String(t.itlMs));
  if (t.outputTokens !== undefined) args.push("--output-tokens", String(t.outputTokens));
  args.push(...settings.vllmArgs);
  return { file: self.file, args, env: { ...childEnv(options.env), ...settings.vllmEnv }, warnings: [] };
}

export function createEngine(settings: EngineSettings, options: CreateEngineOptions): Supervisor {
  const command =
    settings.engine === "sim"
      ? (endpoint: EngineEndpoint) => simCommand(settings, options, endpoint)
      : (endpoint: EngineEndpoint) =>
          buildVllmCommand(
            settings,
            { model: options.model, servedModelName: options.servedModelName, endpoint, plan: options.plan },
            options.env,
          );
  return new Supervisor({
    endpoint: () => nextEndpoint(settings.vllmSocketPath),
    ...options.supervisor,
    kind: settings.engine,
    servedModelName: options.servedModelName,
    command,
    logger: options.logger,
    startupTimeoutMs: settings.engineStartupTimeoutSeconds * 1000,
  });
}
