/**
 * @module join-key: a XEROTIER_AGENT_JOIN_KEY that is set is a whole join key
 * (prefix, project, checksum, the router address inside it). A truncated or
 * mistyped key otherwise surfaced only when `xim run` tried to enroll.
 * Whether the router still accepts it (expiry, uses left) only the router
 * knows; `xim enroll` reports that with the router's reason.
 */
import { parseJoinKey } from "../../protocol/join-key.ts";
import { type Check, fail, ok, skipped } from "../check.ts";

export const joinKey: Check = {
  id: "join-key",
  group: "enrollment",
  title: "Join key is well formed",
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
    return ok(`a join key for project ${parsed.key.project}, enrolling at ${parsed.key.url}`);
  },
};
