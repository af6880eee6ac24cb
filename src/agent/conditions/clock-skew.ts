/**
 * @module clock_skew: the node's clock against the router's. A router puts
 * its time in each register_ack and lease_ack (`routerTimeMs`, optional:
 * an older router sends none and nothing is raised). The node takes the
 * router's time to be that of the middle of the round trip (its send and
 * its receipt of the ack) and raises `clock_skew` (degraded) when the two
 * clocks differ by more than CLOCK_SKEW_BOUND_MS; a later ack within the
 * bound clears it. docs/operations.md says why the bound is 5 s.
 */
import type { ConditionFinding } from "../../doctor/check.ts";

/** Past this difference a node's `since` and log times cannot be lined up with the router's by eye. */
export const CLOCK_SKEW_BOUND_MS = 5000;

/** One ack's timing: when the node sent the request, when the ack came (node clock), and the router's time in it. */
export interface RouterClockSample {
  sentAtMs: number;
  receivedAtMs: number;
  routerTimeMs: number;
}

/** The router's clock minus the node's, estimated at the middle of the round trip. */
export function clockOffsetMs(s: RouterClockSample): number {
  return s.routerTimeMs - (s.sentAtMs + s.receivedAtMs) / 2;
}

const seconds = (ms: number) => (Math.abs(ms) / 1000).toFixed(1);

/**
 * The finding for one sample: `clock_skew` past the bound, undefined within
 * it, "unknown" when the round trip took longer than the bound (a stalled
 * node or network: the estimate could be off by half of it, so it decides
 * nothing).
 */
export function clockSkewFinding(
  s: RouterClockSample,
  boundMs = CLOCK_SKEW_BOUND_MS,
): ConditionFinding | undefined | "unknown" {
  const roundTrip = s.receivedAtMs - s.sentAtMs;
  if (roundTrip < 0 || roundTrip > boundMs) return "unknown";
  const offset = clockOffsetMs(s);
  if (Math.abs(offset) <= boundMs) return undefined;
  const which = offset > 0 ? "behind" : "ahead of";
  return {
    condition: "clock_skew",
    severity: "degraded",
    message: `this node's clock is ${seconds(offset)} s ${which} the router's (more than ${seconds(boundMs)} s): the times of its conditions and logs do not line up with the router's`,
    fix: "Synchronise the clocks of this machine and the router's with NTP (`timedatectl set-ntp true`, or chrony: `chronyc tracking` shows the offset); a container takes the host's clock.",
  };
}

/** Feeds each ack's sample to the node's conditions (`set` raises or clears `clock_skew`). */
export function watchClockSkew(
  set: (finding: ConditionFinding | undefined) => void,
  boundMs = CLOCK_SKEW_BOUND_MS,
): (sample: RouterClockSample) => void {
  return (sample) => {
    const finding = clockSkewFinding(sample, boundMs);
    if (finding !== "unknown") set(finding);
  };
}
