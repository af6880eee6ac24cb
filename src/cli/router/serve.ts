/**
 * @module `xim router serve`: run the router (HTTPS enrollment, the CURVE
 * ZeroMQ control plane, the OpenAI-compatible API and its metrics) until
 * SIGTERM or SIGINT, printing the bound addresses (one JSON line with --json).
 */
import { InvalidArgumentError } from "commander";
import { ExitCode, UsageError } from "../../core/errors.ts";
import { logUnhandledRejections } from "../../core/guard.ts";
import { startRouterService } from "../../router/service.ts";
import { INSECURE_ZMQ_WARNING } from "../../transport/sockets.ts";
import { defineCommand } from "../command.ts";
import { jsonOption, switchOption, textOption, valueOption } from "../options.ts";
import { routerStateDir, stateOption } from "./state.ts";

function positiveInt(name: string) {
  return (value: string) => {
    const n = Number(value);
    if (!Number.isInteger(n) || n < 1)
      throw new InvalidArgumentError(`${name} must be a whole number of at least 1, got '${value}'`);
    return n;
  };
}

function hostPort(value: string): { host: string; port: number } {
  const m = /^(?:\[([^\]]+)\]|([^:]*)):(\d+)$/.exec(value);
  if (!m) throw new Error(`'${value}' is not HOST:PORT`);
  const port = Number(m[3]);
  if (port > 65535) throw new Error(`port ${port} is out of range`);
  return { host: m[1] ?? (m[2] || "0.0.0.0"), port };
}

function nonNegativeInt(name: string) {
  return (value: string) => {
    const n = Number(value);
    if (!Number.isInteger(n) || n < 0)
      throw new InvalidArgumentError(`${name} must be a whole number of at least 0, got '${value}'`);
    return n;
  };
}

function fractionArg(name: string) {
  return (value: string) => {
    const n = Number(value);
    if (!Number.isFinite(n) || n < 0 || n > 1)
      throw new InvalidArgumentError(`${name} must be a number from 0 to 1, got '${value}'`);
    return n;
  };
}

export const serveCommand = defineCommand({
  name: "serve",
  summary: "Run the router: HTTPS enrollment, the CURVE ZeroMQ control plane and the OpenAI-compatible API",
  settings: ["logLevel", "httpHeadersTimeoutMs", "httpBodyIdleTimeoutMs", "httpMaxConnectionsPerClient"],
  options: {
    state: stateOption,
    enrollListen: textOption(
      "--enroll-listen <host:port>",
      "address of the HTTPS enrollment endpoint",
      "0.0.0.0:8443",
    ),
    controlBind: textOption(
      "--control-bind <endpoint>",
      "ZeroMQ control socket (port 0 = any)",
      "tcp://0.0.0.0:5555",
    ),
    streamingBind: textOption(
      "--streaming-bind <endpoint>",
      "ZeroMQ streaming socket (port 0 = any)",
      "tcp://0.0.0.0:5556",
    ),
    advertiseHost: textOption(
      "--advertise-host <host>",
      "host name nodes use to reach this router (default: the bind host, or this machine's name)",
    ),
    tlsCert: textOption(
      "--tls-cert <file>",
      "TLS certificate (PEM); default: the state folder's self-signed one",
    ),
    tlsKey: textOption("--tls-key <file>", "TLS private key (PEM)"),
    insecureHttp: switchOption(
      "--insecure-http",
      "serve enrollment over plain HTTP (development only: keys travel in clear)",
    ),
    insecureZmq: switchOption(
      "--insecure-zmq",
      "run ZeroMQ without CURVE encryption (development and benchmarks only: requests and tokens travel in clear; nodes must set XEROTIER_AGENT_ALLOW_INSECURE=1); binds to loopback only",
    ),
    insecureZmqAllowRemote: switchOption(
      "--insecure-zmq-allow-remote",
      "with --insecure-zmq, allow ZeroMQ binds beyond loopback (no encryption, no protection against an active attacker: trusted networks only)",
    ),
    httpHost: textOption("--http-host <host>", "address of the OpenAI-compatible API", "0.0.0.0"),
    httpPort: valueOption(
      "--http-port <port>",
      "port of the OpenAI-compatible API (0 = any free port)",
      nonNegativeInt("--http-port"),
      8080,
    ),
    metricsPort: valueOption(
      "--metrics-port <port>",
      "serve Prometheus /metrics on this port (0 = any free port); off unless given",
      nonNegativeInt("--metrics-port"),
    ),
    metricsHost: textOption("--metrics-host <host>", "address of the metrics server", "127.0.0.1"),
    queueMax: valueOption(
      "--queue-max <n>",
      "requests parked per node when the only compatible node is full",
      nonNegativeInt("--queue-max"),
      10,
    ),
    queueTimeoutMs: valueOption(
      "--queue-timeout-ms <ms>",
      "how long a parked request waits for a slot before its 503",
      positiveInt("--queue-timeout-ms"),
      30000,
    ),
    flowWindowBytes: valueOption(
      "--flow-window-bytes <n>",
      "credit window asked for each stream (the node's own window caps it); 0 turns flow control off",
      nonNegativeInt("--flow-window-bytes"),
      65536,
    ),
    flowReplenishThreshold: valueOption(
      "--flow-replenish-threshold <f>",
      "fraction of the window taken by the client that triggers credit (when the node does not say)",
      fractionArg("--flow-replenish-threshold"),
      0.5,
    ),
    flowMaxEventBytes: valueOption(
      "--flow-max-event-bytes <n>",
      "longest unfinished SSE event held per stream; a node exceeding it loses the stream (raise it for completions with echo and logprobs over long prompts)",
      positiveInt("--flow-max-event-bytes"),
      1048576,
    ),
    requestDeadlineMs: valueOption(
      "--request-deadline-ms <ms>",
      "the node cancels a request running longer than this (0 = no deadline)",
      nonNegativeInt("--request-deadline-ms"),
      0,
    ),
    json: jsonOption,
  },
  examples: [
    "xim router serve",
    "xim router serve --http-port 8000 --metrics-port 9095",
    "xim router serve --state /var/lib/xim-router --advertise-host router.internal",
    "xim router serve --enroll-listen 127.0.0.1:0 --control-bind tcp://127.0.0.1:0 --streaming-bind tcp://127.0.0.1:0 --json",
  ],
  async run(ctx) {
    const logger = ctx.logger();
    logUnhandledRejections(logger);
    let listen: { host: string; port: number };
    try {
      listen = hostPort(ctx.options.enrollListen);
    } catch (err) {
      throw new UsageError(`--enroll-listen: ${(err as Error).message}`);
    }
    // serve, like init, makes a router in a folder that holds none (a first start in a container).
    const { dir: stateDir } = routerStateDir(ctx);
    const service = await startRouterService({
      stateDir,
      enrollListen: listen,
      controlBind: ctx.options.controlBind,
      streamingBind: ctx.options.streamingBind,
      advertiseHost: ctx.options.advertiseHost,
      plainHttp: ctx.options.insecureHttp === true,
      plainZmq: ctx.options.insecureZmq === true,
      plainZmqAllowRemote: ctx.options.insecureZmqAllowRemote === true,
      tls: { cert: ctx.options.tlsCert, key: ctx.options.tlsKey },
      logger,
      http: { host: ctx.options.httpHost, port: ctx.options.httpPort },
      metricsListen:
        ctx.options.metricsPort === undefined
          ? undefined
          : { host: ctx.options.metricsHost, port: ctx.options.metricsPort },
      queue: {
        queueMax: ctx.options.queueMax,
        queueTimeoutMs: ctx.options.queueTimeoutMs,
      },
      flow: {
        windowBytes: ctx.options.flowWindowBytes,
        replenishThreshold: ctx.options.flowReplenishThreshold,
        creditIdleMs: 100,
        maxEventBytes: ctx.options.flowMaxEventBytes,
      },
      requestDeadlineMs: ctx.options.requestDeadlineMs,
      httpLimits: ctx.config().config,
    });
    if (ctx.options.insecureHttp)
      logger.warn("enrollment is served over plain HTTP: join keys travel in clear; development only");
    if (ctx.options.insecureZmq) logger.warn(INSECURE_ZMQ_WARNING);
    const info = {
      ...service.endpoints,
      stateDir,
      tlsPin: service.identity.tlsPin,
      curvePublicKey: service.identity.curve.publicKey,
    };
    if (ctx.options.json) ctx.io.stdout(`${JSON.stringify(info)}\n`);
    else
      ctx.io.stdout(
        `router serving\n  enrollment: ${info.enrollUrl}\n  control:    ${info.control}\n  streaming:  ${info.streaming}\n  OpenAI API: ${info.httpUrl ?? "-"}\n${info.metricsUrl ? `  metrics:    ${info.metricsUrl}/metrics\n` : ""}  state:      ${info.stateDir}\n`,
      );
    await new Promise<void>((resolve) => {
      const stop = (signal: NodeJS.Signals) => {
        logger.info({ signal }, "stopping the router");
        process.off("SIGTERM", stop);
        process.off("SIGINT", stop);
        resolve();
      };
      process.on("SIGTERM", stop);
      process.on("SIGINT", stop);
    });
    await service.close();
    return ExitCode.ok;
  },
});
