/**
 * An enrolled node that behaves badly: it holds a valid CURVE key (enrolled
 * straight into the router's store) and speaks the wire protocol itself
 * over real ZeroMQ DEALER sockets, so a test can send what the real agent
 * never would. Registration follows the protocol (challenge round
 * included); everything after is the test's to decide. Messages from the
 * router are collected as they arrive and awaited with `next`.
 */
import { randomBytes } from "node:crypto";
import type * as zmq from "zeromq";
import { decodeRouterMessages, encodeBatch, encodeMessage } from "../../src/protocol/codec.ts";
import type { NodeCondition, NodeState } from "../../src/protocol/conditions.ts";
import type { NodeMessage, Outgoing, RouterMessage, RouterMessageOf } from "../../src/protocol/messages.ts";
import type { RouterService } from "../../src/router/service.ts";
import { type CurveKeyPair, curveSharedSecret, registerProof } from "../../src/transport/curve.ts";
import { newRoutingId, openDealer } from "../../src/transport/sockets.ts";
import { enrollDirect } from "../helpers/enroll-direct.ts";

type Waiter = { match: (m: RouterMessage) => boolean; resolve: (m: RouterMessage) => void };

export class RogueNode {
  readonly nodeId: string;
  readonly keys: CurveKeyPair;
  readonly control: zmq.Dealer;
  readonly streaming: zmq.Dealer;
  readonly controlRoutingId = newRoutingId("control");
  readonly streamingRoutingId = newRoutingId("streaming");
  /** Every message received, in order. */
  readonly received: RouterMessage[] = [];
  lease: RouterMessageOf<"register_ack"> | undefined;
  /** What the node reports in its register and every renewal (a test changes it, then calls renew()). */
  conditions: NodeCondition[] = [];
  /** The lifecycle state it reports (undefined: it does not say, as an older node). */
  state: NodeState | undefined;
  readonly #waiters = new Set<Waiter>();
  #renewals: NodeJS.Timeout | undefined;
  #seq = 0;
  readonly #service: RouterService;

  private constructor(service: RouterService, project: string, curve: boolean) {
    this.#service = service;
    const identity = enrollDirect(service.store, project);
    this.keys = identity.keys;
    this.nodeId = identity.nodeId;
    const open = (role: "control" | "streaming", routingId: string, endpoint: string) =>
      openDealer({
        role,
        keys: this.keys,
        serverPublicKey: service.identity.curve.publicKey,
        endpoint,
        routingId,
        curve,
      });
    this.control = open("control", this.controlRoutingId, service.controlPlane.controlEndpoint);
    this.streaming = open("streaming", this.streamingRoutingId, service.controlPlane.streamingEndpoint);
    void this.#read(this.control);
    void this.#read(this.streaming);
  }

  /** Enroll a rogue node with the running router (`curve: false` for a router with --insecure-zmq). */
  static enroll(service: RouterService, o: { project?: string; curve?: boolean } = {}): RogueNode {
    return new RogueNode(service, o.project ?? "default", o.curve ?? true);
  }

  async #read(socket: zmq.Dealer): Promise<void> {
    try {
      for await (const frames of socket) {
        for (const frame of frames)
          for (const r of decodeRouterMessages(frame)) {
            if (!r.ok) continue;
            this.received.push(r.message);
            for (const w of this.#waiters)
              if (w.match(r.message)) {
                this.#waiters.delete(w);
                w.resolve(r.message);
              }
          }
      }
    } catch {
      // closed
    }
  }

  /** The next message received from now on of one of `types` (and matching `match`). */
  next<T extends RouterMessage["type"]>(
    type: T | T[],
    match: (m: RouterMessageOf<T>) => boolean = () => true,
    timeoutMs = 10_000,
  ): Promise<RouterMessageOf<T>> {
    const types: string[] = Array.isArray(type) ? type : [type];
    return new Promise((resolve, reject) => {
      const w: Waiter = {
        match: (m) => types.includes(m.type) && match(m as RouterMessageOf<T>),
        resolve: (m) => {
          clearTimeout(timer);
          resolve(m as RouterMessageOf<T>);
        },
      };
      const timer = setTimeout(() => {
        this.#waiters.delete(w);
        reject(new Error(`the rogue node got no ${types.join(" or ")} within ${timeoutMs} ms`));
      }, timeoutMs);
      this.#waiters.add(w);
    });
  }

  /** Whether a message of this type matching `match` arrived already. */
  got<T extends RouterMessage["type"]>(
    type: T,
    match: (m: RouterMessageOf<T>) => boolean = () => true,
  ): boolean {
    return this.received.some((m) => m.type === type && match(m as RouterMessageOf<T>));
  }

  /** Send messages in one frame on a socket (the streaming one for stream messages). */
  async send(socket: "control" | "streaming", ...messages: Outgoing<NodeMessage>[]): Promise<void> {
    const s = socket === "control" ? this.control : this.streaming;
    await s.send(encodeBatch(messages.map((m) => encodeMessage(m))));
  }

  /** The register message as the real node builds it, for the given challenge. */
  registerMessage(
    challenge: string | null,
    o: { windowBytes?: number; models?: string[]; leaseMs?: number } = {},
  ) {
    const nonce = randomBytes(16).toString("hex");
    const ids = {
      nodeId: this.nodeId,
      nonce,
      challenge,
      controlRoutingId: this.controlRoutingId,
      streamingRoutingId: this.streamingRoutingId,
    };
    const proof = registerProof(curveSharedSecret(this.keys, this.#service.identity.curve.publicKey), ids);
    return {
      type: "register" as const,
      ...ids,
      lastEpoch: 0,
      proof,
      agentVersion: "rogue",
      hardware: { hostname: "rogue", platform: "linux", arch: "x64", cpus: 1, memoryBytes: 1, gpus: [] },
      engine: "ready" as const,
      models: o.models ?? ["sim-model"],
      maxConcurrent: 16,
      freeSlots: 16,
      requestedLeaseMs: o.leaseMs ?? 30_000,
      renewalIntervalMs: 200,
      windowBytes: o.windowBytes ?? 65536,
      conditions: this.conditions,
      ...(this.state ? { state: this.state } : {}),
    };
  }

  /** Register (answering the router's challenge) and keep the lease renewed; resolves with the router's answer. */
  async register(
    o: { windowBytes?: number; models?: string[]; leaseMs?: number } = {},
  ): Promise<RouterMessageOf<"register_ack" | "register_refused">> {
    const answer = () => this.next(["register_ack", "register_refused", "register_challenge"]);
    let reply: RouterMessage;
    {
      const pending = answer();
      await this.send("control", this.registerMessage(null, o));
      reply = await pending;
    }
    if (reply.type === "register_challenge") {
      const pending = answer();
      await this.send("control", this.registerMessage(reply.challenge, o));
      reply = await pending;
    }
    if (reply.type === "register_ack") {
      this.lease = reply;
      clearInterval(this.#renewals); // registering again replaces the renewals of the old lease
      this.#renewals = setInterval(() => void this.renew(), 200);
    }
    return reply as RouterMessageOf<"register_ack" | "register_refused">;
  }

  async renew(): Promise<void> {
    if (!this.lease) return;
    await this.send("control", {
      type: "lease_renew",
      leaseId: this.lease.leaseId,
      epoch: this.lease.epoch,
      seq: this.#seq++,
      engine: "ready",
      models: ["sim-model"],
      maxConcurrent: 16,
      freeSlots: 16,
      conditions: this.conditions,
      ...(this.state ? { state: this.state } : {}),
    }).catch(() => undefined);
  }

  /** Stop renewing without a word, as a node that hangs or loses its network: the lease expires. */
  stopRenewing(): void {
    clearInterval(this.#renewals);
  }

  /** Give the lease back (the router forgets the node's streams and transfers). */
  async release(): Promise<void> {
    clearInterval(this.#renewals);
    if (!this.lease) return;
    await this.send("control", {
      type: "lease_release",
      leaseId: this.lease.leaseId,
      epoch: this.lease.epoch,
    });
    this.lease = undefined;
  }

  close(): void {
    clearInterval(this.#renewals);
    for (const w of this.#waiters) this.#waiters.delete(w);
    this.control.close();
    this.streaming.close();
  }
}
