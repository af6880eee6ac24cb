/**
 * @module join-key: a XEROTIER_AGENT_JOIN_KEY that is set is a whole join key
 * (prefix, project, checksum, the router address inside it). A truncated or
 * mistyped key otherwise surfaced only when `xim run` tried to enroll.
 * When the node is not enrolled yet, the router is asked whether the key
 * would enroll it now (`POST /v1/enroll/check`, which spends nothing): an
 * expired, used-up, revoked or unknown key fails here, not at `xim run`.
 */

import { isXimError, messageOf } from "../../core/errors.ts";
import { checkJoinKey } from "../../enrollment/enroll.ts";
import { isEnrolled } from "../../enrollment/state.ts";
import { parseJoinKey } from "../../protocol/join-key.ts";
import { type Check, fail, ok, skipped, warn } from "../check.ts";

export const joinKey: Check = {
  id: "join-key",
  group: "enrollment",
  title: "Join key is well formed and accepted",
  timeoutMs: 8000,
  async run(ctx) {
    const secret = ctx.config.joinKey;
    if (!secret) return skipped("no join key set (XEROTIER_AGENT_JOIN_KEY)");
    const parsed = parseJoinKey(secret.reveal());
    if (!parsed.ok) {
      return fail(
        `XEROTIER_AGENT_JOIN_KEY is not a join key: ${parsed.message}`,
        "Copy the whole key printed by `xim router join-key create` (xjk_<project>_<token>), or mint a new one.",
      );
    }
    const what = `a join key for project ${parsed.key.project}, enrolling at ${ctx.config.routerUrl ?? parsed.key.url}`;
    if (isEnrolled(ctx.config.configDir))
      return ok(`${what}; this node is enrolled already, so it is not used`);
    try {
      const r = await checkJoinKey({
        joinKey: secret.reveal(),
        routerUrl: ctx.config.routerUrl,
        allowInsecure: ctx.config.allowInsecure,
        timeoutMs: 5000,
      });
      if (!r.ok)
        return fail(
          `${what}: ${r.error.message}`,
          r.error.hint ?? "Mint a new key: `xim router join-key create`.",
        );
      const expires = r.expiresAt === null ? "never expires" : `expires ${r.expiresAt}`;
      return ok(
        `${what}; the router accepts it (${r.usesLeft} use${r.usesLeft === 1 ? "" : "s"} left, ${expires})`,
      );
    } catch (err) {
      // The router could not be asked: router-reachable and `xim enroll` say why.
      return warn(
        `${what}; the router could not be asked whether it still accepts the key: ${messageOf(err)}`,
        (isXimError(err) && err.hint) ||
          "Check that the router's enrollment address is reachable from this machine.",
      );
    }
  },
};
