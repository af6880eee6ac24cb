/**
 * @module The HTTP(S) servers xim exposes on a network (the router's API
 * and enrollment ports, the metrics/health port of the router and the
 * node) are made here, so that each gets the same protections:
 * - a client that is slow to send its headers (or its TLS handshake) is
 *   cut off after `httpHeadersTimeoutMs`, one whose body stalls after
 *   `httpBodyIdleTimeoutMs`, and no request takes longer than
 *   REQUEST_RECEIVE_MS to arrive whole (a body dripped just fast enough);
 * - one client address holds at most `httpMaxConnectionsPerClient`
 *   connections: more are closed at once, so one host cannot take all the
 *   sockets and file descriptors;
 * - the request handler is guarded (core/guard.ts): a throw or a rejection
 *   is logged once and answered with a 500 while the socket can still take
 *   one, and never ends the process.
 */
import http from "node:http";
import https from "node:https";
import type { Socket } from "node:net";
import * as v from "valibot";
import type { Config } from "./config/schema.ts";
import { settings } from "./config/schema.ts";
import { guarded, isPeerGone } from "./guard.ts";
import type { Logger } from "./log.ts";

export type HttpLimits = Pick<
  Config,
  "httpHeadersTimeoutMs" | "httpBodyIdleTimeoutMs" | "httpMaxConnectionsPerClient"
>;

/** The documented defaults (src/core/config/schema.ts), for servers started as a library. */
export const DEFAULT_HTTP_LIMITS: HttpLimits = {
  httpHeadersTimeoutMs: v.parse(settings.httpHeadersTimeoutMs, undefined),
  httpBodyIdleTimeoutMs: v.parse(settings.httpBodyIdleTimeoutMs, undefined),
  httpMaxConnectionsPerClient: v.parse(settings.httpMaxConnectionsPerClient, undefined),
};

/**
 * The longest a whole request (headers and body) may take to arrive, however
 * steadily it trickles in: 8 MiB, the API's largest body, at 1 Mbit/s takes
 * about 70 s. Node's own default is 300 s.
 */
export const REQUEST_RECEIVE_MS = 120_000;

/** Answer a request with an error in the server's own shape (OpenAI JSON, enrollment JSON, text). */
export type ErrorAnswer = (res: http.ServerResponse, status: number, code: string, message: string) => void;

export interface GuardedServerOptions {
  /** What the server is, for log lines ("enrollment", "OpenAI API", "metrics"). */
  what: string;
  logger: Logger;
  limits: HttpLimits;
  /** TLS certificate and key: HTTPS when given. */
  tls?: { cert: string | Buffer; key: string | Buffer };
  handle: (req: http.IncomingMessage, res: http.ServerResponse) => unknown;
  answer: ErrorAnswer;
}

/** Whether an error answer can still be written: nothing sent yet and the connection open. */
export function canAnswer(res: http.ServerResponse): boolean {
  return !res.headersSent && !res.destroyed && res.socket?.writable === true;
}

export function createGuardedServer(o: GuardedServerOptions): http.Server {
  const log = o.logger;
  const options = {
    headersTimeout: o.limits.httpHeadersTimeoutMs,
    requestTimeout: Math.max(REQUEST_RECEIVE_MS, o.limits.httpHeadersTimeoutMs),
    // Node checks the two timeouts above on this period (30 s by default): check often enough that
    // a short limit is kept to within a fraction of itself.
    connectionsCheckingInterval: Math.min(1000, Math.max(50, Math.floor(o.limits.httpHeadersTimeoutMs / 4))),
    // Node's default is 120 s for a TLS handshake, before any header timeout starts.
    handshakeTimeout: o.limits.httpHeadersTimeoutMs,
  };
  const fail = (err: unknown, _req: http.IncomingMessage, res: http.ServerResponse) => {
    if (canAnswer(res) && !isPeerGone(err))
      o.answer(res, 500, "internal_error", `the ${o.what} server failed to handle the request; see its log`);
    else res.destroy();
  };
  const handle = guarded(
    log,
    `${o.what} request`,
    (req: http.IncomingMessage, res: http.ServerResponse) => {
      watchBodyIdle(req, res, o, log);
      return o.handle(req, res);
    },
    fail,
  );
  const server = o.tls
    ? https.createServer({ ...options, cert: o.tls.cert, key: o.tls.key }, handle)
    : http.createServer(options, handle);
  limitConnectionsPerClient(server, o.limits.httpMaxConnectionsPerClient, o.what, log);
  return server;
}

/**
 * While the body is being received, a stall of httpBodyIdleTimeoutMs ends the
 * request with a 408. The socket's idle timer is used (it is reset by every
 * byte read) and stopped when the body has arrived, so that a streaming
 * answer that waits long for its first token is never cut.
 */
function watchBodyIdle(
  req: http.IncomingMessage,
  res: http.ServerResponse,
  o: GuardedServerOptions,
  log: Logger,
): void {
  const socket = req.socket as Socket | null;
  if (!socket || req.complete) return;
  const ms = o.limits.httpBodyIdleTimeoutMs;
  const onIdle = () => {
    log.info(
      { remote: socket.remoteAddress, path: (req.url ?? "").slice(0, 200), idleMs: ms },
      `${o.what}: the request body stalled; connection closed`,
    );
    if (!canAnswer(res)) {
      socket.destroy();
      return;
    }
    // The answer is flushed before the close; the handler's body read then ends as aborted.
    res.shouldKeepAlive = false;
    res.once("finish", () => socket.destroy());
    o.answer(res, 408, "request_timeout", `the request body stalled for ${ms} ms`);
  };
  // On an incomplete request Node hands the socket's timeout to the request (else it destroys the
  // socket without an answer): req.setTimeout arms the socket's timer and listens there.
  req.setTimeout(ms, onIdle);
  req.once("end", () => {
    req.off("timeout", onIdle);
    // After the answer, Node's keep-alive timer owns the socket's timeout: leave it.
    if (!res.writableFinished) socket.setTimeout(0);
  });
}

/** Close connections beyond `max` from one address at once; log once each time a client reaches the cap. */
function limitConnectionsPerClient(server: http.Server, max: number, what: string, log: Logger): void {
  const open = new Map<string, number>();
  const refusing = new Set<string>();
  server.on(
    "connection",
    guarded(log, `${what} connection`, (socket: Socket) => {
      const address = socket.remoteAddress;
      if (address === undefined) {
        socket.destroy();
        return;
      }
      const count = open.get(address) ?? 0;
      if (count >= max) {
        if (!refusing.has(address)) {
          refusing.add(address);
          log.warn(
            { remote: address, max },
            `${what}: ${address} holds ${max} connections (XEROTIER_AGENT_HTTP_MAX_CONNECTIONS_PER_CLIENT); closing its new ones`,
          );
        }
        socket.destroy();
        return;
      }
      open.set(address, count + 1);
      socket.once("close", () => {
        const left = (open.get(address) ?? 1) - 1;
        if (left > 0) open.set(address, left);
        else open.delete(address);
        if (left < max) refusing.delete(address);
      });
    }),
  );
}
