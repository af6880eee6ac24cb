/**
 * @module insecure-enrollment: plain-HTTP enrollment and ZeroMQ without
 * CURVE send credentials in clear: allowed for development, flagged always.
 */
import { type Check, fail, ok, warn } from "../check.ts";

export const insecureEnrollment: Check = {
  id: "insecure-enrollment",
  group: "configuration",
  title: "Enrollment is encrypted",
  async run(ctx) {
    const url = ctx.config.routerUrl;
    const plain = url?.toLowerCase().startsWith("http://") === true;
    if (ctx.config.allowInsecure) {
      return warn(
        `XEROTIER_AGENT_ALLOW_INSECURE=true${plain ? ` and the router URL ${url} is plain HTTP` : ""}: the join key and keys can travel in clear`,
        "Unset XEROTIER_AGENT_ALLOW_INSECURE (development only) and use an https:// router URL.",
      );
    }
    if (plain) {
      return fail(
        `the router URL ${url} is plain HTTP but insecure enrollment is off, so enrollment will refuse it`,
        "Use the router's https:// address in XEROTIER_AGENT_ROUTER_URL (XEROTIER_AGENT_ALLOW_INSECURE=1 only for development).",
      );
    }
    return ok(url ? `router URL ${url}; insecure mode off` : "insecure mode off");
  },
};
