/**
 * @module The engine `xim run` supervises, from the configuration:
 * XEROTIER_AGENT_ENGINE=vllm runs XEROTIER_AGENT_VLLM_PATH as
 * `serve <model> ...` (vllm-args.ts); =sim runs this same executable as
 * `xim engine-sim`: XEROTIER_AGENT_MAX_NUM_SEQS and _MAX_MODEL_LEN apply to
 * it as to vLLM, and the simulator's own options may be given in
 * XEROTIER_AGENT_VLLM_ARGS (e.g. `--ttft-ms 50 --itl-ms 10 --output-tokens 64`);
 * other (vLLM) arguments there are dropped with a warning.
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
  engineKeyEnv,
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
/** engine-sim options that XEROTIER_AGENT_VLLM_ARGS may carry with engine=sim; all take a value. */
const SIM_FLAGS = new Set([
  "--load-time-ms",
  "--ttft-ms",
  "--itl-ms",
  "--output-tokens",
  "--max-num-seqs",
  "--max-model-len",
  "--created",
  "--fail-at-start",
  "--exit-after-ms",
  "--unhealthy-after-ms",
  "--fail-mid-stream-after",
  "--stamp-chunks", // takes no value: last in the arguments, or before another flag
]);

/** Split user args into engine-sim options and the rest (vLLM arguments the simulator does not take). */
function simArgs(args: readonly string[], warnings: string[]): string[] {
  const out: string[] = [];
  for (let i = 0; i < args.length; i++) {
    const eq = args[i].indexOf("=");
    const name = eq === -1 ? args[i] : args[i].slice(0, eq);
    const takesNext = eq === -1 && i + 1 < args.length && !args[i + 1].startsWith("--");
    if (SIM_FLAGS.has(name)) {
      out.push(args[i]);
      if (takesNext) out.push(args[++i]);
    } else {
      warnings.push(
        `ignored '${args[i]}' in XEROTIER_AGENT_VLLM_ARGS: not an option of the simulated engine`,
      );
      if (takesNext) i++;
    }
  }
  return out;
}

export function simCommand(
  settings: Pick<Config, "vllmArgs" | "vllmEnv" | "maxNumSeqs" | "maxModelLen">,
  options: Pick<CreateEngineOptions, "model" | "servedModelName" | "sim" | "env">,
  endpoint: EngineEndpoint,
  apiKey?: string,
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
  if (settings.maxNumSeqs !== undefined) args.push("--max-num-seqs", String(settings.maxNumSeqs));
  if (settings.maxModelLen !== undefined) args.push("--max-model-len", String(settings.maxModelLen));
  const warnings: string[] = [];
  args.push(...simArgs(settings.vllmArgs, warnings));
  const env = { ...childEnv(options.env), ...settings.vllmEnv, ...engineKeyEnv(apiKey) };
  return { file: self.file, args, env, warnings };
}

export function createEngine(settings: EngineSettings, options: CreateEngineOptions): Supervisor {
  const command =
    settings.engine === "sim"
      ? (endpoint: EngineEndpoint, apiKey: string) => simCommand(settings, options, endpoint, apiKey)
      : (endpoint: EngineEndpoint, apiKey: string) =>
          buildVllmCommand(
            settings,
            {
              model: options.model,
              servedModelName: options.servedModelName,
              endpoint,
              plan: options.plan,
              apiKey,
            },
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
