/**
 * @module A reachability check against the router with the node's own
 * identity: a real CURVE handshake on the control endpoint and a
 * ping/pong round trip, bounded by a timeout. `xim doctor` uses it.
 */
import { randomBytes } from "node:crypto";
import { decodeRouterMessage, encodeMessage } from "../protocol/codec.ts";
import { openDealer } from "../transport/sockets.ts";
import type { EnrollmentState } from "./state.ts";

export interface PingResult {
  ok: boolean;
  rttMs: number | null;
  /** Why it failed: "timeout", "auth" (the router refused this node's key), or "handshake". */
  error?: "timeout" | "auth" | "handshake";
  message?: string;
}

export async function pingRouter(
  state: Pick<EnrollmentState, "keys" | "routerPublicKey" | "controlEndpoint"> &
    Partial<Pick<EnrollmentState, "curve">>,
  options: { timeoutMs: number },
): Promise<PingResult> {
  const socket = openDealer({
    role: "control",
    keys: state.keys,
    serverPublicKey: state.routerPublicKey,
    endpoint: state.controlEndpoint,
    curve: state.curve,
  });
  const nonce = randomBytes(16).toString("hex");
  const started = performance.now();
  let failure: PingResult | null = null;
  const watch = (async () => {
    try {
      for await (const event of socket.events) {
        if (event.type === "handshake:error:auth")
          failure = {
            ok: false,
            rttMs: null,
            error: "auth",
            message: `the router at ${state.controlEndpoint} refused this node's CURVE key`,
          };
        else if (event.type === "handshake:error:protocol" || event.type === "handshake:error:other")
          failure ??= {
            ok: false,
            rttMs: null,
            error: "handshake",
            message: `CURVE handshake with ${state.controlEndpoint} failed (${event.type}); is the router key right?`,
          };
      }
    } catch {
      // ends when the socket closes
    }
  })();
  const timer = setTimeout(() => socket.close(), options.timeoutMs);
  try {
    await socket.send(encodeMessage({ type: "ping", nonce, sentAtMs: Date.now() }));
    for await (const [frame] of socket) {
      const decoded = decodeRouterMessage(frame);
      if (decoded.ok && decoded.message.type === "pong" && decoded.message.nonce === nonce) {
        return { ok: true, rttMs: Math.round((performance.now() - started) * 100) / 100 };
      }
    }
  } catch (err) {
    if (!socket.closed) {
      return { ok: false, rttMs: null, error: "handshake", message: String(err) };
    }
  } finally {
    clearTimeout(timer);
    if (!socket.closed) socket.close();
    await watch;
  }
  return (
    failure ?? {
      ok: false,
      rttMs: null,
      error: "timeout",
      message: `no answer from ${state.controlEndpoint} within ${options.timeoutMs} ms`,
    }
  );
}
