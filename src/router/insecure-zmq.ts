/**
 * @module What `xim router serve --insecure-zmq` (ZeroMQ without CURVE)
 * may do. Without CURVE nothing on the ZeroMQ connections is encrypted or
 * authenticated: whoever can see the traffic reads tenants' prompts and
 * answers, and whoever can also reach the ports can take over a node's
 * connection (its routing id travels in clear). The register proof stays
 * fresh (register-challenges.ts), so a sniffed register cannot be replayed,
 * but that is no defence against an active attacker on the path. So the
 * ports bind to loopback only, unless `--insecure-zmq-allow-remote` says
 * the operator means it.
 */
import { isIP } from "node:net";
import { ExitCode, XimError } from "../core/errors.ts";

/** Whether a ZeroMQ endpoint only accepts peers on this machine. */
export function isLocalEndpoint(endpoint: string): boolean {
  if (endpoint.startsWith("ipc://") || endpoint.startsWith("inproc://")) return true;
  const m = /^tcp:\/\/(\[[^\]]*\]|[^:]*):[^:]+$/.exec(endpoint);
  if (!m) return false;
  const host = m[1].replace(/^\[|\]$/g, "").toLowerCase();
  if (host === "localhost" || host === "::1") return true;
  return isIP(host) === 4 && host.startsWith("127.");
}

/** Refuse to bind plain ZeroMQ beyond loopback unless allowed (a usage error, before anything is bound). */
export function checkInsecureBinds(binds: Record<string, string>, allowRemote: boolean): void {
  if (allowRemote) return;
  for (const [flag, endpoint] of Object.entries(binds)) {
    if (isLocalEndpoint(endpoint)) continue;
    throw new XimError(
      "XIM_INSECURE_ZMQ_REMOTE",
      `${flag} ${endpoint} is not a loopback address, and --insecure-zmq has no encryption or authentication: anyone on the network could read requests and take over nodes' connections`,
      {
        hint: "bind to tcp://127.0.0.1:PORT, drop --insecure-zmq, or add --insecure-zmq-allow-remote if the network path is trusted",
        exitCode: ExitCode.usage,
      },
    );
  }
}
