/**
 * @module `xim run`: enroll on first start when a join key is set, then
 * hold the lease with the router until SIGTERM/SIGINT. The engine and the
 * relay plug into src/agent/session.ts (issue 4).
 */
import { runNode } from "../agent/session.ts";
import { ExitCode } from "../core/errors.ts";
import type { CommandSpec } from "./command.ts";

export const runCommand: CommandSpec = {
  name: "run",
  summary: "Run the node: engine, lease and inference relay",
  settings: [
    "joinKey",
    "routerUrl",
    "allowInsecure",
    "configDir",
    "leaseRenewalIntervalMs",
    "leaseDurationMs",
    "streamingSocketEnabled",
    "maxConcurrent",
    "drainGraceSeconds",
    "logLevel",
  ],
  examples: [
    "xim run",
    "XEROTIER_AGENT_JOIN_KEY=xjk_... xim run   # first start enrolls, later starts reconnect",
  ],
  async run(ctx) {
    const { config } = ctx.config();
    const logger = ctx.logger();
    const abort = new AbortController();
    const onSignal = (signal: NodeJS.Signals) => {
      logger.info({ signal }, "signal received");
      abort.abort();
    };
    process.on("SIGTERM", onSignal);
    process.on("SIGINT", onSignal);
    try {
      await runNode({ config, logger, signal: abort.signal });
      return ExitCode.ok;
    } finally {
      process.off("SIGTERM", onSignal);
      process.off("SIGINT", onSignal);
    }
  },
};
