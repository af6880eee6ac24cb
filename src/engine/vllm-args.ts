/**
 * @module The `vllm serve` command line and environment.
 *
 * Merge rule (argparse keeps the last value of a repeated option):
 *   1. `serve <model> --host 127.0.0.1 --port <port> --served-model-name <name>`
 *      (`--uds <path>` instead of host and port with XEROTIER_AGENT_VLLM_SOCKET_PATH)
 *   2. the planner's args (it has already folded the settings into its plan)
 *   3. each engine setting the plan does not mention (--gpu-memory-utilization,
 *      --max-model-len, --tensor-parallel-size, --max-num-seqs)
 *   4. XEROTIER_AGENT_VLLM_ARGS last, so an explicit user argument wins;
 *      except --host/--port/--uds, which xim owns (it health-checks that
 *      address), and --api-key (the node's engine key, below), which are
 *      dropped with a warning.
 * Environment: the node's environment without XEROTIER_AGENT_* (the join key
 * and salt secret stay in the node), then the plan's env, then
 * XEROTIER_AGENT_VLLM_ENV (user wins), then VLLM_API_KEY: the key of this
 * run, which only the node knows (in the environment, not argv, which every
 * local user can read with ps).
 */
import type { Config } from "../core/config/schema.ts";
import { XimError } from "../core/errors.ts";
import { REDACTED } from "../core/secret.ts";
import type { EngineEndpoint } from "./endpoint.ts";

export interface EnginePlan {
  args: string[];
  env: Record<string, string>;
}

export type VllmSettings = Pick<
  Config,
  | "vllmPath"
  | "vllmArgs"
  | "vllmEnv"
  | "gpuMemoryUtilization"
  | "maxModelLen"
  | "tensorParallelSize"
  | "maxNumSeqs"
>;

export interface VllmLaunch {
  /** A model folder or Hugging Face id: vLLM's positional model_tag. */
  model: string;
  /** The name clients and the router use (--served-model-name). */
  servedModelName: string;
  endpoint: EngineEndpoint;
  plan?: EnginePlan;
  /** The key the engine requires on /v1 paths (VLLM_API_KEY); the supervisor makes one per run. */
  apiKey?: string;
}

export interface EngineCommand {
  file: string;
  args: string[];
  env: Record<string, string>;
  /** Things the user asked for that xim overrode, for the log. */
  warnings: string[];
}

/** Options xim owns, with why: dropped from the user's arguments. */
const OWNED = new Map([
  ["--host", "xim chooses the engine's address"],
  ["--port", "xim chooses the engine's address"],
  ["--uds", "xim chooses the engine's address"],
  ["--api-key", "the node gives the engine a key of its own at each start (VLLM_API_KEY)"],
]);

/** The engine's environment entry for its API key (none: no key). */
export function engineKeyEnv(apiKey: string | undefined): Record<string, string> {
  return apiKey ? { VLLM_API_KEY: apiKey } : {};
}

function flagName(arg: string): string | undefined {
  if (!arg.startsWith("--")) return undefined;
  const eq = arg.indexOf("=");
  return eq === -1 ? arg : arg.slice(0, eq);
}

/** Drop owned options (with their value when given as a separate word). */
function withoutOwned(args: readonly string[], warnings: string[]): string[] {
  const out: string[] = [];
  for (let i = 0; i < args.length; i++) {
    const name = flagName(args[i]);
    const why = name === undefined ? undefined : OWNED.get(name);
    if (name !== undefined && why !== undefined) {
      // --api-key takes one or more values (nargs="+"); the others one.
      let values = 0;
      while (
        !args[i].includes("=") &&
        i + 1 + values < args.length &&
        !args[i + 1 + values].startsWith("--") &&
        (values === 0 || name === "--api-key")
      )
        values++;
      const shown = redactArgs(args.slice(i, i + 1 + values)).join(" ");
      warnings.push(`ignored '${shown}' in XEROTIER_AGENT_VLLM_ARGS: ${why}`);
      i += values;
      continue;
    }
    out.push(args[i]);
  }
  return out;
}

const SECRET_FLAG = /^--[\w-]*(key|token|secret|password)[\w-]*$/i;

/** The args as they may be logged: values of flags such as --api-key become [redacted]. */
export function redactArgs(args: readonly string[]): string[] {
  const out: string[] = [];
  for (let i = 0; i < args.length; i++) {
    const eq = args[i].indexOf("=");
    const name = eq === -1 ? args[i] : args[i].slice(0, eq);
    if (!SECRET_FLAG.test(name)) {
      out.push(args[i]);
    } else if (eq !== -1) {
      out.push(`${name}=${REDACTED}`);
    } else {
      out.push(name);
      // --api-key takes one or more values (nargs="+"): redact up to the next flag.
      while (i + 1 < args.length && !args[i + 1].startsWith("--")) {
        out.push(REDACTED);
        i++;
      }
    }
  }
  return out;
}

/** The environment a child engine inherits: everything but xim's own settings (secrets among them). */
export function childEnv(base: Record<string, string | undefined> = process.env): Record<string, string> {
  const env: Record<string, string> = {};
  for (const [k, v] of Object.entries(base)) {
    if (v !== undefined && !k.startsWith("XEROTIER_AGENT_")) env[k] = v;
  }
  return env;
}

/** A number that is not one: what String() makes of NaN and ±Infinity. */
const NOT_FINITE = /(^|[^A-Za-z_])(NaN|[+-]?Infinity)([^A-Za-z_]|$)/;

/**
 * The last guard before vLLM starts: no value xim computed (the planner's
 * arguments and environment, the engine settings) may carry NaN or
 * Infinity. Inputs are validated where they enter (model-config.ts, the
 * settings schema); reaching this means a computation went wrong, and vLLM
 * must not start with it.
 */
export function assertFiniteNumbers(args: readonly string[], env: Record<string, string>): void {
  const bad =
    args.find((a) => NOT_FINITE.test(a)) ??
    Object.entries(env)
      .filter(([, value]) => NOT_FINITE.test(value))
      .map(([k, value]) => `${k}=${value}`)[0];
  if (bad === undefined) return;
  throw new XimError(
    "XIM_PLAN_NOT_FINITE",
    `the engine plan holds a number that is not finite (${bad.slice(0, 100)}); vLLM is not started with it`,
    { hint: "this is a bug in xim: report it with the output of `xim plan --json --model <folder>`" },
  );
}

export function buildVllmCommand(
  settings: VllmSettings,
  launch: VllmLaunch,
  baseEnv: Record<string, string | undefined> = process.env,
): EngineCommand {
  const warnings: string[] = [];
  const planArgs = launch.plan?.args ?? [];
  const planned = new Set(planArgs.map(flagName).filter((n): n is string => n !== undefined));
  const address =
    "socketPath" in launch.endpoint
      ? ["--uds", launch.endpoint.socketPath]
      : ["--host", launch.endpoint.host, "--port", String(launch.endpoint.port)];
  const args = [
    "serve",
    launch.model,
    ...address,
    "--served-model-name",
    launch.servedModelName,
    ...withoutOwned(planArgs, []),
  ];
  const fromSettings: Array<[string, number | undefined]> = [
    ["--gpu-memory-utilization", settings.gpuMemoryUtilization],
    ["--max-model-len", settings.maxModelLen],
    ["--tensor-parallel-size", settings.tensorParallelSize],
    ["--max-num-seqs", settings.maxNumSeqs],
  ];
  for (const [flag, value] of fromSettings) {
    if (value !== undefined && !planned.has(flag)) args.push(flag, String(value));
  }
  assertFiniteNumbers(args, launch.plan?.env ?? {});
  const userArgs = withoutOwned(settings.vllmArgs, warnings);
  const secretFlags = userArgs
    .map(flagName)
    .filter((n): n is string => n !== undefined && SECRET_FLAG.test(n));
  if (secretFlags.length > 0) {
    warnings.push(
      `${secretFlags.join(", ")} in XEROTIER_AGENT_VLLM_ARGS puts a secret on vLLM's command line, where every local user can read it (ps); give it to vLLM in XEROTIER_AGENT_VLLM_ENV instead (HF_TOKEN=... for --hf-token)`,
    );
  }
  args.push(...userArgs);
  if (launch.apiKey && settings.vllmEnv.VLLM_API_KEY !== undefined)
    warnings.push(`ignored VLLM_API_KEY in XEROTIER_AGENT_VLLM_ENV: ${OWNED.get("--api-key")}`);
  const env = {
    ...childEnv(baseEnv),
    ...(launch.plan?.env ?? {}),
    ...settings.vllmEnv,
    ...engineKeyEnv(launch.apiKey),
  };
  return { file: settings.vllmPath, args, env, warnings };
}

/** The port word of a shown command: the real one is a free loopback port chosen at each start. */
export const SHOWN_PORT = "PORT";

/** What the shown command has for the engine key: a fresh one is made at every start. */
export const SHOWN_ENGINE_KEY = "<a fresh key at each engine start>";

/**
 * The command `xim plan` and `xim run --dry-run` print, built by
 * buildVllmCommand itself so the shown argv is the executed one and the
 * two cannot drift: secret flag values redacted, the port a placeholder,
 * and only the environment xim sets (the plan's, then
 * XEROTIER_AGENT_VLLM_ENV), not the variables the engine inherits.
 */
export function shownVllmCommand(
  settings: VllmSettings & { vllmSocketPath?: string },
  launch: Omit<VllmLaunch, "endpoint">,
): EngineCommand {
  const endpoint = settings.vllmSocketPath
    ? { socketPath: settings.vllmSocketPath }
    : { host: "127.0.0.1", port: 0 };
  // The engine's key is made at each start: shown as set, never as a value.
  const built = buildVllmCommand(settings, { ...launch, endpoint, apiKey: SHOWN_ENGINE_KEY }, {});
  const args = redactArgs(built.args);
  if (!settings.vllmSocketPath) args[args.indexOf("--port") + 1] = SHOWN_PORT;
  return { ...built, args };
}
