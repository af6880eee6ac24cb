/**
 * @module The ZeroMQ sockets of the control plane, configured in one place:
 * CURVE on both ends, 4 MiB buffers, a hard message-size bound, no linger
 * on close (a dead router must not hold a node's shutdown; a node's last
 * close opts into NODE_CLOSE_LINGER_MS), and a send
 * timeout of 0 so a full queue drops a message instead of blocking the
 * caller (the lease and flow-control logic above decides what to resend).
 */
import { randomBytes } from "node:crypto";
import * as zmq from "zeromq";
import { SOCKET_MAX_MESSAGE_BYTES } from "../protocol/codec.ts";
import type { CurveKeyPair } from "./curve.ts";
import { SOCKET_BUFFER_BYTES } from "./socket-buffers.ts";

export type SocketRole = "control" | "streaming";

/** What router and node log at start-up when ZeroMQ runs without CURVE (router/insecure-zmq.ts). */
export const INSECURE_ZMQ_WARNING =
  "ZeroMQ runs WITHOUT CURVE (--insecure-zmq): no encryption and no protection against an active attacker on the path; requests, tokens and node identities travel in clear; development and benchmarks only";

/**
 * A node's last close (after its lease release) keeps this long: every
 * message whose send resolved (it is in libzmq's queue) still leaves for
 * the router within it, and a router that is gone holds the process's exit
 * (libzmq's context termination) no longer than this. A close on reconnect
 * keeps linger 0: what was queued for a dead connection is stale.
 */
export const NODE_CLOSE_LINGER_MS = 1000;

export function newRoutingId(role: SocketRole): string {
  return `${role === "control" ? "c" : "s"}.${randomBytes(16).toString("hex")}`;
}

export interface DealerOptions {
  role: SocketRole;
  keys: CurveKeyPair;
  serverPublicKey: string;
  endpoint: string;
  routingId?: string;
  bufferBytes?: number;
  /** false only against a router started with --insecure-zmq: no encryption, no key check by ZAP. */
  curve?: boolean;
}

/** A node-side DEALER, connected (connecting happens in the background). */
export function openDealer(options: DealerOptions): zmq.Dealer {
  const buffer = options.bufferBytes ?? SOCKET_BUFFER_BYTES;
  const socket = new zmq.Dealer({
    routingId: options.routingId ?? newRoutingId(options.role),
    ...(options.curve === false
      ? {}
      : {
          curveServerKey: options.serverPublicKey,
          curvePublicKey: options.keys.publicKey,
          curveSecretKey: options.keys.secretKey,
        }),
    sendBufferSize: buffer,
    receiveBufferSize: buffer,
    maxMessageSize: SOCKET_MAX_MESSAGE_BYTES,
    linger: 0,
    sendTimeout: 0,
    sendHighWaterMark: 10000,
    receiveHighWaterMark: 10000,
    reconnectInterval: 200,
    reconnectMaxInterval: 5000,
    heartbeatInterval: 5000,
    heartbeatTimeout: 15000,
    handshakeInterval: 10000,
  });
  socket.connect(options.endpoint);
  return socket;
}

export interface RouterSocketOptions {
  serverKeys: CurveKeyPair;
  zapDomain: string;
  bind: string;
  bufferBytes?: number;
  /** false: plain ZeroMQ (`xim router serve --insecure-zmq`); nodes are still identified by the register proof. */
  curve?: boolean;
}

/** A router-side ROUTER with CURVE server role, bound. */
export async function openRouterSocket(options: RouterSocketOptions): Promise<zmq.Router> {
  const buffer = options.bufferBytes ?? SOCKET_BUFFER_BYTES;
  const socket = new zmq.Router({
    ...(options.curve === false
      ? {}
      : {
          curveServer: true,
          curvePublicKey: options.serverKeys.publicKey,
          curveSecretKey: options.serverKeys.secretKey,
          zapDomain: options.zapDomain,
        }),
    sendBufferSize: buffer,
    receiveBufferSize: buffer,
    maxMessageSize: SOCKET_MAX_MESSAGE_BYTES,
    linger: 0,
    sendTimeout: 0,
    mandatory: false,
    handover: true,
    sendHighWaterMark: 100000,
    receiveHighWaterMark: 100000,
    heartbeatInterval: 5000,
    heartbeatTimeout: 15000,
    handshakeInterval: 10000,
  });
  await socket.bind(options.bind);
  return socket;
}

/** Send without ever throwing: false when the queue is full or the socket is closed. */
export async function trySend(
  socket: zmq.Dealer | zmq.Router,
  frames: zmq.MessageLike[] | zmq.MessageLike,
): Promise<boolean> {
  if (socket.closed) return false;
  try {
    await socket.send(frames as zmq.MessageLike[]);
    return true;
  } catch {
    return false;
  }
}
