/**
 * @module The node's first step: its enrollment state, enrolling with the
 * join key on a first start (`xim run` with XEROTIER_AGENT_JOIN_KEY), and
 * refusing a router without CURVE unless the operator accepted plain
 * ZeroMQ. A node that cannot enroll stops here, before any engine starts.
 */
import type { Config } from "../core/config/schema.ts";
import { ExitCode, XimError } from "../core/errors.ts";
import type { Logger } from "../core/log.ts";
import { enroll } from "../enrollment/enroll.ts";
import { type EnrollmentState, loadEnrollmentState } from "../enrollment/state.ts";
import { warnSocketBuffersOnce } from "../transport/socket-buffers.ts";
import { INSECURE_ZMQ_WARNING } from "../transport/sockets.ts";

export type EnrollmentSettings = Pick<Config, "configDir" | "joinKey" | "routerUrl" | "allowInsecure">;

/** The enrollment state, enrolling first when there is none and a join key is set. */
export async function ensureEnrolled(
  config: EnrollmentSettings,
  logger: Logger,
): Promise<{ state: EnrollmentState; enrolled: boolean }> {
  let state = await loadEnrollmentState(config.configDir);
  let enrolled = false;
  if (!state) {
    if (!config.joinKey) {
      throw new XimError(
        "XIM_NOT_ENROLLED",
        `this node is not enrolled (no enrollment state in ${config.configDir})`,
        {
          hint: "Run 'xim enroll --join-key xjk_...', or set XEROTIER_AGENT_JOIN_KEY so 'xim run' enrolls on first start.",
        },
      );
    }
    await enroll({
      joinKey: config.joinKey,
      routerUrl: config.routerUrl,
      allowInsecure: config.allowInsecure,
      configDir: config.configDir,
      logger,
    });
    enrolled = true;
    state = await loadEnrollmentState(config.configDir);
    if (!state)
      throw new XimError("XIM_STATE_INVALID", `enrollment succeeded but ${config.configDir} holds no state`);
  }
  refuseInsecureRouter(state, config, logger);
  warnSocketBuffersOnce(logger);
  return { state, enrolled };
}

function refuseInsecureRouter(state: EnrollmentState, config: EnrollmentSettings, logger: Logger): void {
  if (state.curve !== false) return;
  if (!config.allowInsecure) {
    throw new XimError(
      "XIM_INSECURE_ROUTER",
      "the router runs ZeroMQ without CURVE encryption (xim router serve --insecure-zmq): requests and tokens would travel in clear",
      {
        exitCode: ExitCode.config,
        hint: "Use a router without --insecure-zmq, or accept plain ZeroMQ for development with XEROTIER_AGENT_ALLOW_INSECURE=1.",
      },
    );
  }
  logger.warn(INSECURE_ZMQ_WARNING);
}
