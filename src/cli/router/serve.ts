/**
 * @module `xim router serve`: run the router (HTTPS enrollment, the CURVE
 * ZeroMQ control plane, the OpenAI-compatible API and its metrics) until
 * SIGTERM or SIGINT, printing the bound addresses (one JSON line with
 * --json). Its flags are the router's settings (src/router/settings.ts):
 * each also has an XIM_ROUTER_* variable; a flag wins over the variable.
 */
import { ExitCode } from "../../core/errors.ts";
import { logUnhandledRejections } from "../../core/guard.ts";
import type { Logger } from "../../core/log.ts";
import { type RouterServiceOptions, startRouterService } from "../../router/service.ts";
import {
  loadRouterSettings,
  type RouterSettingKey,
  type RouterSettings,
  routerSettingInfos,
  routerSettingProblem,
} from "../../router/settings.ts";
import { INSECURE_ZMQ_WARNING } from "../../transport/sockets.ts";
import { defineCommand, type OptionSpec } from "../command.ts";
import { jsonOption } from "../options.ts";
import { settingDescription, settingFlagSyntax } from "../setting-help.ts";
import { routerStateDir, stateOption } from "./state.ts";

/** A router setting's flag: its raw text, checked by the setting's schema as it is parsed (a bad one exits 2). */
type SettingFlag = OptionSpec<string | boolean | undefined>;

/** One flag per router setting; their values go to loadRouterSettings, which adds the environment and defaults. */
function routerSettingFlags(): Record<RouterSettingKey, SettingFlag> {
  const entries = routerSettingInfos.map((info): [RouterSettingKey, SettingFlag] => [
    info.key,
    {
      flags: settingFlagSyntax(info),
      description: settingDescription(info),
      parse: (value) => {
        const problem = routerSettingProblem(info.key, value);
        if (problem) throw new Error(problem);
        return value;
      },
    },
  ]);
  return Object.fromEntries(entries) as Record<RouterSettingKey, SettingFlag>;
}

/** What startRouterService takes from the settings (state folder, logger and HTTP limits come from elsewhere). */
function serviceSettings(s: RouterSettings) {
  return {
    enrollListen: s.enrollListen,
    controlBind: s.controlBind,
    streamingBind: s.streamingBind,
    advertiseHost: s.advertiseHost,
    plainHttp: s.insecureHttp,
    plainZmq: s.insecureZmq,
    plainZmqAllowRemote: s.insecureZmqAllowRemote,
    tls: { cert: s.tlsCert, key: s.tlsKey },
    http: { host: s.httpHost, port: s.httpPort },
    metricsListen: s.metricsPort === undefined ? undefined : { host: s.metricsHost, port: s.metricsPort },
    queue: { queueMax: s.queueMax, queueTimeoutMs: s.queueTimeoutMs },
    flow: {
      windowBytes: s.flowWindowBytes,
      replenishThreshold: s.flowReplenishThreshold,
      creditIdleMs: 100,
      maxEventBytes: s.flowMaxEventBytes,
    },
    requestDeadlineMs: s.requestDeadlineMs,
  } satisfies Partial<RouterServiceOptions>;
}

function untilStopSignal(logger: Logger): Promise<void> {
  return new Promise<void>((resolve) => {
    const stop = (signal: NodeJS.Signals) => {
      logger.info({ signal }, "stopping the router");
      process.off("SIGTERM", stop);
      process.off("SIGINT", stop);
      resolve();
    };
    process.on("SIGTERM", stop);
    process.on("SIGINT", stop);
  });
}

export const serveCommand = defineCommand({
  name: "serve",
  summary: "Run the router: HTTPS enrollment, the CURVE ZeroMQ control plane and the OpenAI-compatible API",
  settings: ["logLevel", "httpHeadersTimeoutMs", "httpBodyIdleTimeoutMs", "httpMaxConnectionsPerClient"],
  options: { state: stateOption, ...routerSettingFlags(), json: jsonOption },
  examples: [
    "xim router serve",
    "xim router serve --http-port 8000 --metrics-port 9095",
    "xim router serve --state /var/lib/xim-router --advertise-host router.internal",
    "xim router serve --enroll-listen 127.0.0.1:0 --control-bind tcp://127.0.0.1:0 --streaming-bind tcp://127.0.0.1:0 --json",
  ],
  async run(ctx) {
    const logger = ctx.logger();
    logUnhandledRejections(logger);
    const { settings, warnings } = loadRouterSettings({ flags: ctx.options, env: ctx.io.env });
    for (const w of warnings) logger.warn(w);
    // serve, like init, makes a router in a folder that holds none (a first start in a container).
    const { dir: stateDir } = routerStateDir(ctx);
    const service = await startRouterService({
      ...serviceSettings(settings),
      stateDir,
      logger,
      httpLimits: ctx.config().config,
    });
    if (settings.insecureHttp)
      logger.warn("enrollment is served over plain HTTP: join keys travel in clear; development only");
    if (settings.insecureZmq) logger.warn(INSECURE_ZMQ_WARNING);
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
    await untilStopSignal(logger);
    await service.close();
    return ExitCode.ok;
  },
});
