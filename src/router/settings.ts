/**
 * @module The settings of `xim router serve`: every XIM_ROUTER_* variable in
 * one valibot schema, built with the node's setting builders
 * (src/core/config/kit.ts). Each entry names its variable, documentation
 * and default once; serve's flags, their --help, this loader and the
 * README's router table are made from it. Precedence: flag > environment >
 * default (an empty value counts as unset). The router's state folder
 * (XIM_ROUTER_STATE_DIR, every `xim router` subcommand) is src/cli/router/state.ts.
 */
import * as v from "valibot";
import { ConfigError, type ConfigProblem } from "../core/config/errors.ts";
import {
  bool,
  fraction,
  int,
  listenAddress,
  optionalInt,
  optionalString,
  type RawValue,
  stringWithDefault,
  type UngroupedSettingMeta,
} from "../core/config/kit.ts";
import { dedupe, describeSource, type Env, present, type ValueSource } from "../core/config/load.ts";
import { describeSettings } from "../core/config/setting-info.ts";
import { nearest } from "../core/suggest.ts";

export const ROUTER_ENV_PREFIX = "XIM_ROUTER_";
/** The router's state folder: every `xim router` subcommand reads it (src/cli/router/state.ts). */
export const ROUTER_STATE_ENV = "XIM_ROUTER_STATE_DIR";

export const routerSettings = {
  enrollListen: listenAddress(
    {
      env: "XIM_ROUTER_ENROLL_LISTEN",
      argName: "host:port",
      doc: "address of the HTTPS enrollment endpoint",
    },
    "0.0.0.0:8443",
  ),
  controlBind: stringWithDefault(
    { env: "XIM_ROUTER_CONTROL_BIND", argName: "endpoint", doc: "ZeroMQ control socket (port 0 = any)" },
    "tcp://0.0.0.0:5555",
  ),
  streamingBind: stringWithDefault(
    { env: "XIM_ROUTER_STREAMING_BIND", argName: "endpoint", doc: "ZeroMQ streaming socket (port 0 = any)" },
    "tcp://0.0.0.0:5556",
  ),
  advertiseHost: optionalString({
    env: "XIM_ROUTER_ADVERTISE_HOST",
    argName: "host",
    doc: "host name nodes use to reach this router",
    defaultText: "the bind host, or this machine's name",
  }),
  tlsCert: optionalString({
    env: "XIM_ROUTER_TLS_CERT",
    argName: "file",
    doc: "TLS certificate (PEM)",
    defaultText: "the state folder's self-signed one",
  }),
  tlsKey: optionalString({ env: "XIM_ROUTER_TLS_KEY", argName: "file", doc: "TLS private key (PEM)" }),
  insecureHttp: bool(
    {
      env: "XIM_ROUTER_INSECURE_HTTP",
      doc: "serve enrollment over plain HTTP (development only: keys travel in clear)",
    },
    false,
  ),
  insecureZmq: bool(
    {
      env: "XIM_ROUTER_INSECURE_ZMQ",
      doc: "run ZeroMQ without CURVE encryption (development and benchmarks only: requests and tokens travel in clear; nodes must set XEROTIER_AGENT_ALLOW_INSECURE=1); binds to loopback only",
    },
    false,
  ),
  insecureZmqAllowRemote: bool(
    {
      env: "XIM_ROUTER_INSECURE_ZMQ_ALLOW_REMOTE",
      doc: "with --insecure-zmq, allow ZeroMQ binds beyond loopback (no encryption, no protection against an active attacker: trusted networks only)",
    },
    false,
  ),
  httpHost: stringWithDefault(
    { env: "XIM_ROUTER_HTTP_HOST", argName: "host", doc: "address of the OpenAI-compatible API" },
    "0.0.0.0",
  ),
  httpPort: int(
    {
      env: "XIM_ROUTER_HTTP_PORT",
      argName: "port",
      doc: "port of the OpenAI-compatible API (0 = any free port)",
    },
    { min: 0, max: 65535 },
    8080,
  ),
  metricsPort: optionalInt(
    {
      env: "XIM_ROUTER_METRICS_PORT",
      argName: "port",
      doc: "serve Prometheus /metrics on this port (0 = any free port); off unless given",
      defaultText: "off",
    },
    { min: 0, max: 65535 },
  ),
  metricsHost: stringWithDefault(
    { env: "XIM_ROUTER_METRICS_HOST", argName: "host", doc: "address of the metrics server" },
    "127.0.0.1",
  ),
  queueMax: int(
    {
      env: "XIM_ROUTER_QUEUE_MAX",
      argName: "n",
      doc: "requests parked per node when the only compatible node is full",
    },
    { min: 0 },
    10,
  ),
  queueTimeoutMs: int(
    {
      env: "XIM_ROUTER_QUEUE_TIMEOUT_MS",
      argName: "ms",
      doc: "how long a parked request waits for a slot before its 503",
    },
    { min: 1 },
    30000,
  ),
  flowWindowBytes: int(
    {
      env: "XIM_ROUTER_FLOW_WINDOW_BYTES",
      argName: "n",
      doc: "credit window asked for each stream (the node's own window caps it); 0 turns flow control off",
    },
    { min: 0 },
    65536,
  ),
  flowReplenishThreshold: fraction(
    {
      env: "XIM_ROUTER_FLOW_REPLENISH_THRESHOLD",
      argName: "f",
      doc: "fraction of the window taken by the client that triggers credit (when the node does not say)",
    },
    0.5,
  ),
  flowMaxEventBytes: int(
    {
      env: "XIM_ROUTER_FLOW_MAX_EVENT_BYTES",
      argName: "n",
      doc: "longest unfinished SSE event held per stream; a node exceeding it loses the stream (raise it for completions with echo and logprobs over long prompts)",
    },
    { min: 1 },
    1048576,
  ),
  requestDeadlineMs: int(
    {
      env: "XIM_ROUTER_REQUEST_DEADLINE_MS",
      argName: "ms",
      doc: "the node cancels a request running longer than this (0 = no deadline)",
    },
    { min: 0 },
    0,
  ),
} satisfies Record<string, v.GenericSchema>;

export const RouterSettingsSchema = v.object(routerSettings);
export type RouterSettings = v.InferOutput<typeof RouterSettingsSchema>;
export type RouterSettingKey = keyof typeof routerSettings;

/** Every router setting's metadata, in table order. */
export const routerSettingInfos = describeSettings<RouterSettingKey, UngroupedSettingMeta>(
  routerSettings,
  ROUTER_ENV_PREFIX,
);

const ROUTER_HINT =
  "Fix the values above; 'xim router serve --help' lists every setting with its variable and default.";

/** A switch given as a flag (`--insecure-http`) is `true`; everything else is raw text. */
export type RouterFlagValues = Partial<Record<RouterSettingKey, RawValue | boolean | undefined>>;

export interface LoadedRouterSettings {
  settings: RouterSettings;
  /** Unknown XIM_ROUTER_* variables (likely typos), each with the nearest known name. */
  warnings: string[];
}

/** The router's settings from its flags and the environment; a bad value throws ConfigError (exit 78). */
export function loadRouterSettings(o: { flags: RouterFlagValues; env: Env }): LoadedRouterSettings {
  const raw: Partial<Record<RouterSettingKey, RawValue>> = {};
  const sources = {} as Record<RouterSettingKey, ValueSource>;
  for (const s of routerSettingInfos) {
    const given = o.flags[s.key];
    const fromFlag = typeof given === "boolean" ? String(given) : given;
    if (present(fromFlag)) {
      raw[s.key] = fromFlag;
      sources[s.key] = { kind: "flag", flag: s.flag };
    } else if (present(o.env[s.env])) {
      raw[s.key] = o.env[s.env];
      sources[s.key] = { kind: "env" };
    } else sources[s.key] = { kind: "default" };
  }
  const result = v.safeParse(RouterSettingsSchema, raw, { abortEarly: false });
  if (result.success) return { settings: result.output, warnings: unknownVariables(o.env) };
  const problems = result.issues.map((issue): ConfigProblem => {
    const key = issue.path?.[0]?.key as RouterSettingKey;
    const info = routerSettingInfos.find((s) => s.key === key);
    return {
      env: info?.env ?? "router settings",
      value: [raw[key] ?? []].flat().join(" ") || undefined,
      message: issue.message,
      source: describeSource(sources[key] ?? { kind: "default" }),
    };
  });
  throw new ConfigError(dedupe(problems), ROUTER_HINT);
}

function unknownVariables(env: Env): string[] {
  const known = [...routerSettingInfos.map((s) => s.env), ROUTER_STATE_ENV];
  return Object.keys(env)
    .filter((name) => name.startsWith(ROUTER_ENV_PREFIX) && !known.includes(name))
    .map((name) => {
      const guess = nearest(name, known, 6);
      return `unknown variable ${name} (from environment)${guess ? `; did you mean ${guess}?` : ""}`;
    });
}

/** One setting's value checked alone, as its flag is parsed: the problem, or undefined when it is valid. */
export function routerSettingProblem(key: RouterSettingKey, value: string): string | undefined {
  const result = v.safeParse(routerSettings[key], value);
  return result.success ? undefined : result.issues[0].message;
}
