/**
 * @module router-reachable: the router's control endpoint answers. A TCP
 * connect first (refused, timed out, unresolvable: the network's problem),
 * then a real CURVE handshake with the node's enrolled key and a ping/pong
 * round trip (src/agent/ping.ts): a refused key or a changed router key is
 * the enrollment's problem. Reports both round-trip times.
 */
import { loadEnrollmentState } from "../../agent/enrollment-state.ts";
import { pingRouter } from "../../agent/ping.ts";
import { type Check, fail, ok, skipped } from "../check.ts";
import { parseTcpEndpoint, tcpConnect } from "../tcp-connect.ts";

export const ROUTER_TIMEOUT_MS = 3000;
export const PING_TIMEOUT_MS = 3000;

export const routerReachable: Check = {
  id: "router-reachable",
  group: "enrollment",
  title: "Router reachable (TCP, CURVE handshake, ping)",
  timeoutMs: ROUTER_TIMEOUT_MS + PING_TIMEOUT_MS + 1000,
  async run(ctx, signal) {
    let state: Awaited<ReturnType<typeof loadEnrollmentState>>;
    try {
      state = await loadEnrollmentState(ctx.config.configDir);
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
    const tcpMs = `TCP connect ${tcp.rttMs.toFixed(1)} ms`;
    if (signal.aborted) return skipped("stopped at the doctor's deadline");
    const ping = await pingRouter(state, { timeoutMs: PING_TIMEOUT_MS });
    if (ping.ok) {
      return ok(
        `${state.controlEndpoint}: ${tcpMs}, CURVE handshake and ping round trip ${ping.rttMs?.toFixed(1)} ms`,
      );
    }
    if (ping.error === "auth") {
      return fail(
        `${state.controlEndpoint}: ${tcpMs}, but ${ping.message ?? "the router refused this node's key"} (node ${state.nodeId} revoked, or enrolled again elsewhere)`,
        "Enroll again with a new join key: `xim enroll --join-key xjk_... --force`.",
      );
    }
    if (ping.error === "handshake") {
      return fail(
        `${state.controlEndpoint}: ${tcpMs}, but ${ping.message ?? "the CURVE handshake failed"}`,
        "The router's key is not the one this node enrolled with (router reinstalled?): enroll again with `xim enroll --join-key xjk_... --force`.",
      );
    }
    return fail(
      `${state.controlEndpoint}: ${tcpMs}, but ${ping.message ?? `no pong within ${PING_TIMEOUT_MS} ms`}`,
      `Something else than the router's control socket listens on ${ep.host}:${ep.port}, or the router is overloaded; check \`xim router\` there and the port in ${state.controlEndpoint}.`,
    );
  },
};
