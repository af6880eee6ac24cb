/**
 * @module Why this node cannot reach its router, in the words an operator
 * acts on: nothing listens (refused), the packets are dropped (timeout), the
 * name does not resolve, another router answers (a CURVE key that is not the
 * enrolled one), the router refuses this node's key (revoked or unknown), or
 * something that is not the router's control socket listens there. `xim
 * doctor` (router-reachable) and `xim run` (a registration without an
 * answer) both tell these apart with this one function.
 */

import { parseTcpEndpoint, tcpConnect } from "../transport/tcp-connect.ts";
import { pingRouter } from "./ping.ts";
import type { EnrollmentState } from "./state.ts";

export type RouterProblem =
  | "bad_endpoint"
  | "refused"
  | "timeout"
  | "dns"
  | "network"
  | "key_refused"
  | "other_router"
  | "silent";

export type RouterDiagnosis =
  | { ok: true; endpoint: string; tcpMs: number; rttMs: number }
  | { ok: false; endpoint: string; problem: RouterProblem; detail: string; fix: string; tcpMs?: number };

const ENROLL_AGAIN = "enroll again with a new join key: `xim enroll --join-key xjk_... --force`";

export async function diagnoseRouter(
  state: Pick<EnrollmentState, "keys" | "routerPublicKey" | "controlEndpoint" | "nodeId"> &
    Partial<Pick<EnrollmentState, "curve">>,
  options: { timeoutMs: number; signal?: AbortSignal },
): Promise<RouterDiagnosis> {
  const endpoint = state.controlEndpoint;
  const ep = parseTcpEndpoint(endpoint);
  if (!ep) {
    return {
      ok: false,
      endpoint,
      problem: "bad_endpoint",
      detail: `${endpoint} is not tcp://host:port`,
      fix: ENROLL_AGAIN,
    };
  }
  const tcp = await tcpConnect(ep.host, ep.port, options.timeoutMs, options.signal);
  if (!tcp.ok) {
    const reach = `check that the router runs and that this machine may open TCP to ${ep.host}:${ep.port} (\`nc -vz ${ep.host} ${ep.port}\`)`;
    if (tcp.code === "ECONNREFUSED")
      return {
        ok: false,
        endpoint,
        problem: "refused",
        detail:
          "connection refused: nothing listens there (the router is down or on another port), or a firewall rejects it",
        fix: reach,
      };
    if (tcp.code === "ETIMEDOUT")
      return {
        ok: false,
        endpoint,
        problem: "timeout",
        detail: `no TCP answer within ${options.timeoutMs} ms: a firewall drops the packets, or the host is down`,
        fix: reach,
      };
    if (tcp.code === "ENOTFOUND" || tcp.code === "EAI_AGAIN")
      return {
        ok: false,
        endpoint,
        problem: "dns",
        detail: `the name ${ep.host} does not resolve`,
        fix: `check DNS for ${ep.host} from this machine (or its container)`,
      };
    return { ok: false, endpoint, problem: "network", detail: tcp.message, fix: reach };
  }
  const ping = await pingRouter(state, { timeoutMs: options.timeoutMs });
  if (ping.ok) return { ok: true, endpoint, tcpMs: tcp.rttMs, rttMs: ping.rttMs ?? 0 };
  if (ping.error === "auth") {
    return {
      ok: false,
      endpoint,
      problem: "key_refused",
      tcpMs: tcp.rttMs,
      detail: `the router refused this node's CURVE key (node ${state.nodeId} was revoked, or the router's state was reset)`,
      fix: ENROLL_AGAIN,
    };
  }
  if (ping.error === "handshake") {
    return {
      ok: false,
      endpoint,
      problem: "other_router",
      tcpMs: tcp.rttMs,
      detail:
        "a router answers, but with a CURVE key that is not the one this node enrolled with (another router, or one reinstalled)",
      fix: `point the node at the router it enrolled with, or ${ENROLL_AGAIN}`,
    };
  }
  return {
    ok: false,
    endpoint,
    problem: "silent",
    tcpMs: tcp.rttMs,
    detail: `no answer within ${options.timeoutMs} ms over ZeroMQ: something other than the router's control socket listens there, or the router is overloaded`,
    fix: `check the port in ${endpoint} against \`xim router serve\`'s --control-bind`,
  };
}
