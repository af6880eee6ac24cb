/**
 * @module The start-up checks as `xim enroll` runs them: every watched
 * check of the doctor's registry once, and the conditions they raise as
 * lines for stderr (a blocking one as an error with its fix). `xim run`
 * runs the same checks through its monitor before registering and sends
 * the conditions with the registration.
 */

import type { Config } from "../../core/config/schema.ts";
import { type Logger, silentLogger } from "../../core/log.ts";
import type { NodeCondition } from "../../protocol/conditions.ts";
import { ConditionMonitor } from "./monitor.ts";

export async function preflight(o: {
  config: Config;
  env: Record<string, string | undefined>;
  logger?: Logger;
}): Promise<NodeCondition[]> {
  const monitor = new ConditionMonitor({
    doctor: { config: o.config, env: o.env, procRoot: o.env.XIM_PROC_ROOT || undefined },
    logger: o.logger ?? silentLogger(),
  });
  await monitor.checkNow();
  return monitor.current();
}

/** One paragraph per blocking or degraded condition (info ones are for `xim doctor`). */
export function preflightText(conditions: readonly NodeCondition[]): string {
  return conditions
    .filter((c) => c.severity !== "info")
    .map(
      (c) =>
        `${c.severity === "blocking" ? "error" : "warning"}: ${c.condition} (${c.severity}): ${c.message}\n  fix: ${c.fix}\n`,
    )
    .join("");
}
