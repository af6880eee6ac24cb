/**
 * @module config-valid: the whole configuration validates through the config
 * core (flags > environment > .env > defaults), and no XEROTIER_AGENT_*
 * variable is unknown (a typo silently does nothing).
 */
import { formatProblem } from "../../core/config/errors.ts";
import { type Check, fail, ok, warn } from "../check.ts";

export const configValid: Check = {
  id: "config-valid",
  group: "configuration",
  title: "Configuration validates",
  async run(ctx) {
    if (ctx.configProblems && ctx.configProblems.length > 0) {
      return fail(
        `${ctx.configProblems.length} problem${ctx.configProblems.length === 1 ? "" : "s"}: ${ctx.configProblems.map(formatProblem).join("; ")}`,
        "Correct the values named above (`xim config` prints every setting with its source; `xim --help` lists what each accepts).",
      );
    }
    if (ctx.configWarnings.length > 0) {
      return warn(
        ctx.configWarnings.join("; "),
        "Rename or remove the unknown variables (`xim config` lists the valid names).",
      );
    }
    return ok("every setting is valid");
  },
};
