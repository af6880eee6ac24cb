/**
 * @module lease-ratio: the lease must outlast at least two renewal intervals
 * (the schema enforces it); at less than three, a single lost renewal leaves
 * under one interval of slack before the router expires the node.
 */
import { type Check, fail, ok, warn } from "../check.ts";

export const leaseRatio: Check = {
  id: "lease-ratio",
  group: "configuration",
  title: "Lease duration vs renewal interval",
  async run(ctx) {
    const problem = ctx.configProblems?.find((p) => p.env === "XEROTIER_AGENT_LEASE_DURATION_MS");
    const { leaseDurationMs: d, leaseRenewalIntervalMs: r } = ctx.config;
    if (problem) {
      return fail(
        `XEROTIER_AGENT_LEASE_DURATION_MS: ${problem.message}`,
        "Set XEROTIER_AGENT_LEASE_DURATION_MS to at least 3x XEROTIER_AGENT_LEASE_RENEWAL_INTERVAL_MS.",
      );
    }
    const ratio = d / r;
    const evidence = `lease ${d} ms / renewal ${r} ms = ${ratio.toFixed(2)}x`;
    if (ratio < 3) {
      return warn(
        `${evidence}: one lost renewal leaves less than one interval before the lease expires`,
        `Set XEROTIER_AGENT_LEASE_DURATION_MS=${3 * r} (3x the renewal interval) or lower XEROTIER_AGENT_LEASE_RENEWAL_INTERVAL_MS.`,
      );
    }
    return ok(evidence);
  },
};
