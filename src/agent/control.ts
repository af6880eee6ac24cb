/**
 * @module The node's two channels to the router: the control DEALER and,
 * when enabled, the streaming DEALER, both CURVE with the node's enrolled
 * key and fresh random routing ids per connection. Stream-plane messages
 * (stream_start, chunk, stream_end, stream_error) go on the streaming
 * socket; everything else on control. Frames from the router are decoded
 * without throwing; bad ones are counted and dropped.
 */
import * as v from "valibot";
import type * as zmq from "zeromq";
import type { Logger } from "../core/log.ts";
import type { EnrollmentState } from "../enrollment/state.ts";
import { type DecodeResult, decodeRouterMessages, encodeMessage } from "../protocol/codec.ts";
import {
  type NodeMessage,
  type Outgoing,
  RegisterRefusedSchema,
  type RouterMessage,
  STREAM_PLANE_NODE_TYPES,
} from "../protocol/messages.ts";
import { BatchSender } from "../transport/batch-sender.ts";
import { newRoutingId, openDealer } from "../transport/sockets.ts";

export interface ChannelCounters {
  malformed: number;
  oversized: number;
  unknownType: number;
  invalid: number;
  versionMismatch: number;
  sendFailed: number;
  authFailures: number;
}

export function newChannelCounters(): ChannelCounters {
  return {
    malformed: 0,
    oversized: 0,
    unknownType: 0,
    invalid: 0,
    versionMismatch: 0,
    sendFailed: 0,
    authFailures: 0,
  };
}

export interface ChannelOptions {
  state: Pick<
    EnrollmentState,
    "keys" | "routerPublicKey" | "controlEndpoint" | "streamingEndpoint" | "curve"
  >;
  streaming: boolean;
  logger: Logger;
  counters: ChannelCounters;
  onMessage: (message: RouterMessage) => void;
  /** The router refused our CURVE key (ZAP): this node is not (or no longer) enrolled there. */
  onAuthFailure?: (detail: string) => void;
}

/**
 * The streaming socket sends at most once per this many ms while chunks
 * come back to back (the first after a pause leaves at once, so time to
 * first token is not touched). An engine that writes a token every few
 * microseconds then costs one send per millisecond, not one per socket
 * read: at one stream that was most of the node's CPU (bench/README.md).
 * Token streams from vLLM are 5 ms or more apart and never wait.
 */
const STREAM_HOLD_MS = 1;

export class NodeChannel {
  readonly controlRoutingId = newRoutingId("control");
  readonly streamingRoutingId: string | null;
  readonly #control: zmq.Dealer;
  readonly #streaming: zmq.Dealer | null;
  readonly #o: ChannelOptions;
  readonly #senders = new Map<zmq.Dealer, BatchSender>();
  readonly #loops: Promise<void>[] = [];
  #lastDropLog = 0;
  #closed = false;

  constructor(o: ChannelOptions) {
    this.#o = o;
    this.streamingRoutingId = o.streaming ? newRoutingId("streaming") : null;
    const base = { keys: o.state.keys, serverPublicKey: o.state.routerPublicKey, curve: o.state.curve };
    this.#control = openDealer({
      ...base,
      role: "control",
      endpoint: o.state.controlEndpoint,
      routingId: this.controlRoutingId,
    });
    this.#streaming = this.streamingRoutingId
      ? openDealer({
          ...base,
          role: "streaming",
          endpoint: o.state.streamingEndpoint,
          routingId: this.streamingRoutingId,
        })
      : null;
    for (const socket of [this.#control, this.#streaming]) {
      if (!socket) continue;
      this.#loops.push(this.#receive(socket), this.#watch(socket));
    }
  }

  /**
   * Queue a message for the router; false when it could not be queued (never
   * throws). Messages queued while a send is in flight leave together as one
   * multipart message (src/transport/batch-sender.ts).
   */
  send(message: Outgoing<NodeMessage>): Promise<boolean> {
    const socket =
      this.#streaming && STREAM_PLANE_NODE_TYPES.has(message.type) ? this.#streaming : this.#control;
    let sender = this.#senders.get(socket);
    if (!sender) {
      sender = new BatchSender(
        (frame) => socket.send(frame),
        () => socket.closed,
        socket === this.#streaming ? STREAM_HOLD_MS : 0,
      );
      this.#senders.set(socket, sender);
    }
    const failuresBefore = sender.failures;
    let frame: Buffer;
    try {
      frame = encodeMessage(message);
    } catch (err) {
      this.#o.logger.error(
        { err, type: message.type },
        "a message to the router could not be encoded; dropped",
      );
      return Promise.resolve(false);
    }
    return sender.push(frame).then((sent) => {
      if (!sent && sender.failures > failuresBefore) this.#o.counters.sendFailed++;
      return sent;
    });
  }

  /**
   * Close both sockets. `lingerMs` > 0 (the last close, after the lease
   * release): the messages already handed to the sockets still leave for up
   * to that long; 0 (a reconnect) drops them, as they belong to a dead connection.
   */
  async close(lingerMs = 0): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    for (const socket of [this.#control, this.#streaming]) {
      if (!socket) continue;
      socket.linger = lingerMs;
      socket.close();
    }
    await Promise.allSettled(this.#loops);
  }

  #drop(counter: keyof ChannelCounters, detail: string): void {
    this.#o.counters[counter]++;
    const now = Date.now();
    if (now - this.#lastDropLog > 10_000) {
      this.#lastDropLog = now;
      this.#o.logger.warn(
        { counter, total: this.#o.counters[counter] },
        `dropped a message from the router: ${detail}`,
      );
    }
  }

  async #receive(socket: zmq.Dealer): Promise<void> {
    try {
      for await (const frames of socket) {
        // Every frame, and every message packed in a frame, in order.
        for (const frame of frames)
          for (const result of decodeRouterMessages(frame)) this.#receiveResult(result);
      }
    } catch (err) {
      if (!this.#closed) this.#o.logger.error({ err }, "receive loop stopped");
    }
  }

  #receiveResult(result: DecodeResult<RouterMessage>): void {
    if (result.ok) {
      this.#deliver(result.message);
      return;
    }
    if (result.reason === "version") {
      // A refusal's fields are frozen across versions: read it whatever the router's version.
      const refusal = v.safeParse(RegisterRefusedSchema, result.raw);
      if (refusal.success) this.#deliver(refusal.output);
      else this.#drop("versionMismatch", result.detail);
      return;
    }
    this.#drop(result.reason === "unknown_type" ? "unknownType" : result.reason, result.detail);
  }

  #deliver(message: RouterMessage): void {
    try {
      this.#o.onMessage(message);
    } catch (err) {
      this.#o.logger.error({ err, type: message.type }, "handling a router message failed");
    }
  }

  async #watch(socket: zmq.Dealer): Promise<void> {
    try {
      for await (const event of socket.events) {
        if (event.type === "handshake:error:auth") {
          this.#o.counters.authFailures++;
          this.#o.onAuthFailure?.(`the router refused this node's CURVE key (${event.error.message})`);
        } else if (event.type === "handshake:error:protocol" || event.type === "handshake:error:other") {
          this.#o.logger.debug({ event: event.type }, "CURVE handshake failed");
        }
      }
    } catch {
      // The observer ends when the socket closes.
    }
  }
}
