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

/** A ZAP reply's status: 200 with the user id to attach, or 400 with why. */
interface ZapAnswer {
  status: "200" | "400";
  statusText: string;
  userId: string;
}

/** Ask the domain's authorizer about one handshake; anything unknown or failing is denied. */
function decide(h: Handler, frames: Buffer[], logger: Logger | undefined): ZapAnswer {
  // [peer, "", version, requestId, domain, address, identity, mechanism, credentials...]
  const [, , version, , domain, address, , mechanism, credential] = frames;
  const denied = (statusText: string): ZapAnswer => ({ status: "400", statusText, userId: "" });
  if (text(version) !== "1.0") return denied("denied");
  const authorize = h.authorizers.get(text(domain));
  if (!authorize) return denied("unknown ZAP domain");
  const publicKey = text(mechanism) === "CURVE" && credential?.length === 32 ? z85Encode(credential) : null;
  try {
    const decision = authorize({
      domain: text(domain),
      address: text(address),
      mechanism: text(mechanism),
      publicKey,
    });
    if (!decision.allow) return denied(decision.reason ?? "denied");
    return { status: "200", statusText: "OK", userId: decision.userId ?? "" };
  } catch (err) {
    logger?.error({ err }, "ZAP authorizer failed; handshake denied");
    return denied("denied");
  }
}

async function serve(h: Handler, logger: Logger | undefined): Promise<void> {
  for await (const frames of h.socket) {
    const [peer, , , requestId] = frames;
    if (!peer || !requestId) continue;
    const { status, statusText, userId } = decide(h, frames, logger);
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
