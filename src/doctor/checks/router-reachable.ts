/**
 * @module router-reachable: the router's control endpoint answers: a TCP
 * connect first (refused, timed out, unresolvable), with its round-trip time.
 */
import { loadEnrollmentState } from "../../agent/enrollment-state.ts";
import { type Check, fail, ok, skipped } from "../check.ts";
import { parseTcpEndpoint, tcpConnect } from "../tcp-connect.ts";

export const ROUTER_TIMEOUT_MS = 3000;

export const routerReachable: Check = {
  id: "router-reachable",
  group: "enrollment",
  title: "Router reachable",
  async run(ctx, signal) {
    let state: ReturnType<typeof loadEnrollmentState>;
    try {
      state = loadEnrollmentState(ctx.config.configDir);
    } catch {
      return skipped("the enrollment state is unreadable (see enrollment-state)");
    }
    if (!state) return skipped("not enrolled (see enrollment-state)");
    const ep = parseTcpEndpoint(state.controlEndpoint);
    if (!ep)
      return fail(
        `the control endpoint ${state.controlEndpoint} is not tcp://host:port`,
        "Enroll again: `xim enroll --join-key xjk_... --force`.",
      );
    const tcp = await tcpConnect(ep.host, ep.port, ROUTER_TIMEOUT_MS, signal);
    if (!tcp.ok) {
      const why =
        tcp.code === "ECONNREFUSED"
          ? "connection refused (nothing listens there, or a firewall rejects it)"
          : tcp.code === "ETIMEDOUT"
            ? `no answer within ${ROUTER_TIMEOUT_MS} ms (a firewall drops the packets, or the host is down)`
            : tcp.code === "ENOTFOUND" || tcp.code === "EAI_AGAIN"
              ? `the name ${ep.host} does not resolve`
              : tcp.message;
      return fail(
        `${state.controlEndpoint}: ${why}`,
        `Check that the router runs and that this machine may open outbound TCP to ${ep.host}:${ep.port} (\`nc -vz ${ep.host} ${ep.port}\`).`,
      );
    }
    return ok(`${state.controlEndpoint}: TCP connect in ${tcp.rttMs.toFixed(1)} ms`);
  },
};
