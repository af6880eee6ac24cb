/**
 * @module The process's ZAP handler (ZeroMQ RFC 27). libzmq asks the socket
 * bound to inproc://zeromq.zap.01 in the same context about every CURVE
 * handshake; answering "400" fails the handshake, so only keys the
 * authorizer admits ever reach a server socket. There can be one such
 * socket per context, hence one handler per process with authorizers
 * registered per ZAP domain (a server socket sets `zapDomain`).
 */
import * as zmq from "zeromq";
import type { Logger } from "../core/log.ts";
import { z85Encode } from "./curve.ts";

export const ZAP_ENDPOINT = "inproc://zeromq.zap.01";

export interface ZapRequest {
  domain: string;
  address: string;
  mechanism: string;
  /** The client's CURVE public key in Z85 (CURVE only). */
  publicKey: string | null;
}

export interface ZapDecision {
  allow: boolean;
  /** Becomes the connection's User-Id metadata on success. */
  userId?: string;
  reason?: string;
}

export type ZapAuthorizer = (req: ZapRequest) => ZapDecision;

interface Handler {
  socket: zmq.Router;
  authorizers: Map<string, ZapAuthorizer>;
  loop: Promise<void>;
}

let handler: Handler | undefined;

function text(frame: Buffer | undefined): string {
  return frame ? frame.toString("utf8") : "";
}

async function serve(h: Handler, logger: Logger | undefined): Promise<void> {
  for await (const frames of h.socket) {
    // [peer, "", version, requestId, domain, address, identity, mechanism, credentials...]
    const [peer, , version, requestId, domain, address, , mechanism, credential] = frames;
    if (!peer || !requestId) continue;
    let status = "400";
    let statusText = "denied";
    let userId = "";
    if (text(version) === "1.0") {
      const authorize = h.authorizers.get(text(domain));
      const publicKey =
        text(mechanism) === "CURVE" && credential?.length === 32 ? z85Encode(credential) : null;
      if (authorize) {
        try {
          const decision = authorize({
            domain: text(domain),
            address: text(address),
            mechanism: text(mechanism),
            publicKey,
          });
          if (decision.allow) {
            status = "200";
            statusText = "OK";
            userId = decision.userId ?? "";
          } else {
            statusText = decision.reason ?? "denied";
          }
        } catch (err) {
          logger?.error({ err }, "ZAP authorizer failed; handshake denied");
        }
      } else {
        statusText = "unknown ZAP domain";
      }
    }
    await h.socket.send([peer, "", "1.0", requestId, status, statusText, userId, ""]);
  }
}

/** Register the authorizer of a ZAP domain; returns a function that removes it (and the handler when it was the last). */
export async function registerZapDomain(
  domain: string,
  authorize: ZapAuthorizer,
  logger?: Logger,
): Promise<() => Promise<void>> {
  if (!handler) {
    const socket = new zmq.Router({ linger: 0 });
    await socket.bind(ZAP_ENDPOINT);
    const h: Handler = { socket, authorizers: new Map(), loop: Promise.resolve() };
    h.loop = serve(h, logger).catch((err: unknown) => {
      if (!socket.closed) logger?.error({ err }, "ZAP handler stopped");
    });
    handler = h;
  }
  if (handler.authorizers.has(domain))
    throw new Error(`ZAP domain ${domain} is already registered in this process`);
  handler.authorizers.set(domain, authorize);
  const h = handler;
  return async () => {
    h.authorizers.delete(domain);
    if (h.authorizers.size === 0 && handler === h) {
      handler = undefined;
      h.socket.close();
      await h.loop;
    }
  };
}
