/**
 * @module A plain TCP connect with a deadline, for reachability checks:
 * resolves with the round-trip time of the handshake or the error code,
 * and always closes the socket.
 */
import { connect } from "node:net";

export type TcpResult = { ok: true; rttMs: number } | { ok: false; code: string; message: string };

export function tcpConnect(
  host: string,
  port: number,
  timeoutMs: number,
  signal?: AbortSignal,
): Promise<TcpResult> {
  return new Promise((resolve) => {
    const started = performance.now();
    const socket = connect({ host, port });
    let done = false;
    const finish = (r: TcpResult) => {
      if (done) return;
      done = true;
      clearTimeout(timer);
      signal?.removeEventListener("abort", onAbort);
      socket.destroy();
      resolve(r);
    };
    const onAbort = () => finish({ ok: false, code: "ABORTED", message: "stopped before an answer" });
    const timer = setTimeout(
      () => finish({ ok: false, code: "ETIMEDOUT", message: `no answer within ${timeoutMs} ms` }),
      timeoutMs,
    );
    signal?.addEventListener("abort", onAbort, { once: true });
    socket.once("connect", () => finish({ ok: true, rttMs: performance.now() - started }));
    socket.once("error", (e: NodeJS.ErrnoException) =>
      finish({ ok: false, code: e.code ?? "ERROR", message: e.message }),
    );
  });
}

/** host and port of "tcp://host:port" (IPv6 in brackets). */
export function parseTcpEndpoint(endpoint: string): { host: string; port: number } | undefined {
  const m = /^tcp:\/\/(\[[^\]]+\]|[^:/]+):(\d+)$/.exec(endpoint);
  if (!m) return undefined;
  return { host: m[1].replace(/^\[|\]$/g, ""), port: Number(m[2]) };
}
