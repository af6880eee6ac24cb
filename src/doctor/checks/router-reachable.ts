/**
 * @module router-reachable: the router's control endpoint answers. A TCP
 * connect first (refused, timed out, unresolvable: the network's problem),
 * then a real CURVE handshake with the node's enrolled key and a ping/pong
 * round trip (src/enrollment/ping.ts): a refused key or a changed router key is
 * the enrollment's problem. Reports both round-trip times.
 */

import { diagnoseRouter } from "../../enrollment/router-diagnosis.ts";
import { loadEnrollmentState } from "../../enrollment/state.ts";
import { type Check, fail, ok, skipped } from "../check.ts";

export const ROUTER_TIMEOUT_MS = 3000;

export const routerReachable: Check = {
  id: "router-reachable",
  group: "enrollment",
  title: "Router reachable (TCP, CURVE handshake, ping)",
  timeoutMs: 2 * ROUTER_TIMEOUT_MS + 1000,
  async run(ctx, signal) {
    let state: Awaited<ReturnType<typeof loadEnrollmentState>>;
    try {
      state = await loadEnrollmentState(ctx.config.configDir);
    } catch {
      return skipped("the enrollment state is unreadable (see enrollment-state)");
    }
    if (!state) return skipped("not enrolled (see enrollment-state)");
    const d = await diagnoseRouter(state, { timeoutMs: ROUTER_TIMEOUT_MS, signal });
    if (d.ok) {
      return ok(
        `${d.endpoint}: TCP connect ${d.tcpMs.toFixed(1)} ms, CURVE handshake and ping round trip ${d.rttMs.toFixed(1)} ms`,
      );
    }
    const tcp = d.tcpMs === undefined ? "" : `TCP connect ${d.tcpMs.toFixed(1)} ms, but `;
    return fail(`${d.endpoint}: ${tcp}${d.detail}`, `${d.fix[0].toUpperCase()}${d.fix.slice(1)}.`);
  },
};
