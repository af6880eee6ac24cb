/**
 * @module enrollment-state: the enrollment state in the config folder is
 * present, readable and whole (node id, router endpoints, the key pair that
 * matches it), read through the agent's own loader.
 */

import { messageOf } from "../../core/errors.ts";
import { enrollmentPath, loadEnrollmentState } from "../../enrollment/state.ts";
import { type Check, fail, ok, warn } from "../check.ts";

export const enrollmentState: Check = {
  id: "enrollment-state",
  group: "enrollment",
  title: "Enrollment state",
  async run(ctx) {
    let state: Awaited<ReturnType<typeof loadEnrollmentState>>;
    try {
      state = await loadEnrollmentState(ctx.config.configDir);
    } catch (err) {
      const hint = (err as { hint?: string }).hint;
      return fail(messageOf(err), hint ?? "Enroll again: `xim enroll --join-key xjk_... --force`.");
    }
    if (!state) {
      if (ctx.config.joinKey) {
        return ok(
          `not enrolled yet (${enrollmentPath(ctx.config.configDir)} absent); \`xim run\` enrolls with XEROTIER_AGENT_JOIN_KEY`,
        );
      }
      return warn(
        `not enrolled: ${enrollmentPath(ctx.config.configDir)} does not exist and no join key is set`,
        "Enroll with a join key from the router: `xim enroll --join-key xjk_...` (or set XEROTIER_AGENT_JOIN_KEY for `xim run`).",
      );
    }
    return ok(
      `node ${state.nodeId} (project ${state.project}), enrolled ${state.enrolledAt} with ${state.routerUrl}; control ${state.controlEndpoint}, streaming ${state.streamingEndpoint}`,
    );
  },
};
