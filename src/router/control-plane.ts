/**
 * @module The router's ZeroMQ side: the control and streaming ROUTER
 * sockets (CURVE, with a ZAP allow-list of enrolled node keys), node
 * registration with a fresh proof of key possession (a single-use
 * challenge, register-challenges.ts), leases with an id and an
 * epoch (a newer registration fences the older one), expiry after the
 * lease duration without renewal, and the hooks the inference path uses
 * to send dispatches and receive stream messages. Bad frames are counted
 * and dropped; nothing a peer sends can stop the loop.
 *
 * Revocation (`xim router nodes revoke`, another process) reaches the running
 * router through the shared database: the ZAP allow-list reads it at every
 * handshake, and a poll (about once a second) ends the lease of a revoked
 * node that is still connected: `node_revoked` is sent on its live
 * connection, its routing ids are unbound (so its renewals, stream messages
 * and our dispatches to it stop at once) and the lease listeners hear of it
 * with `revoked` set, so the relay ends its streams and requeues.
 */
import { randomBytes } from "node:crypto";
import type * as zmq from "zeromq";
import { guarded } from "../core/guard.ts";
import type { Logger } from "../core/log.ts";
import { XIM_VERSION } from "../core/version.ts";
import { type DecodeResult, decodeNodeMessages, encodeMessage } from "../protocol/codec.ts";
import {
  blockingConditions,
  type NodeCondition,
  type NodeState as ReportedState,
} from "../protocol/conditions.ts";
import {
  type Hardware,
  type NodeMessage,
  type NodeMessageOf,
  type NodeStatus,
  type Outgoing,
  type RouterMessage,
  STREAM_PLANE_ROUTER_TYPES,
} from "../protocol/messages.ts";
import { PROTOCOL_VERSION, upgradeSide, versionMismatchMessage } from "../protocol/version.ts";
import { BatchSender } from "../transport/batch-sender.ts";
import { type CurveKeyPair, curveSharedSecret, verifyRegisterProof } from "../transport/curve.ts";
import { openRouterSocket, type SocketRole } from "../transport/sockets.ts";
import { registerZapDomain } from "../transport/zap.ts";
import { isAvailable, isOffline } from "./node-availability.ts";
import { RegisterChallenges } from "./register-challenges.ts";
import { type NodeState, RELEASED_BY_NODE, type RouterStore } from "./store.ts";
import { registerWindowProblem } from "./stream-limits.ts";

export const MIN_LEASE_MS = 200;
export const MAX_LEASE_MS = 600_000;

export interface Lease {
  nodeId: string;
  project: string;
  leaseId: string;
  epoch: number;
  controlRoutingId: string | null;
  streamingRoutingId: string | null;
  leaseMs: number;
  lastRenewal: number;
  state: NodeState;
  status: NodeStatus;
  hardware: Hardware | null;
  agentVersion: string;
  /** The `lastEpoch` the node sent in its register: 0 from a process that never held a lease. */
  lastEpoch?: number;
  /** Set when the lease ended because the operator revoked the node (state is then "expired"). */
  revoked?: boolean;
  /** The lifecycle state the node reported last (null: it does not say; see src/protocol/conditions.ts). */
  reportedState: ReportedState | null;
  /** The conditions the node reported last; a `blocking` one stops dispatch to it (queue.ts). */
  conditions: NodeCondition[];
  /** When the lease stopped being live (expired or released); absent while live, or for a previous run's lease. */
  offlineSince?: number;
  /** Why it stopped: "its lease expired" or "it gave its lease back". */
  offlineReason?: string;
}

/** How often the running router looks for nodes revoked by `xim router nodes revoke` (another process). */
export const REVOCATION_POLL_MS = 1000;

const REVOKED_MESSAGE =
  "the router's operator revoked this node (xim router nodes revoke); its key is refused from now on";

export interface ControlPlaneOptions {
  store: RouterStore;
  keys: CurveKeyPair;
  controlBind: string;
  streamingBind: string;
  logger: Logger;
  now?: () => number;
  /** How often leases are checked for expiry. */
  expiryCheckMs?: number;
  /** false: ZeroMQ without CURVE (`--insecure-zmq`, development and benchmarks only). */
  curve?: boolean;
  /** How often revocations written by another process are looked for (default REVOCATION_POLL_MS). */
  revocationPollMs?: number;
  /** The window the router asks of each stream (0: flow control off); a node must accept one. */
  flowWindowBytes?: number;
}

export type NodeMessageListener = (lease: Lease, message: NodeMessage) => void;
export type LeaseListener = (lease: Lease, previous: NodeState | null) => void;
/** A node's set of blocking conditions changed (`before`: the names it had). */
export type BlockingListener = (lease: Lease, before: ReadonlySet<string>) => void;

/** The counters of frames from nodes that were dropped, by why: `frames_dropped_total{reason}`. */
export const FRAME_DROP_COUNTERS = [
  "malformed",
  "oversized",
  "unknownType",
  "invalid",
  "versionMismatch",
  "unbound",
] as const;

const COUNTERS = [
  "zapRefused",
  "zapAdmitted",
  ...FRAME_DROP_COUNTERS,
  "fenced",
  "expired",
  "renewed",
  "registered",
  "badProof",
  "revoked",
] as const;
export type CounterName = (typeof COUNTERS)[number];

function stateFor(status: NodeStatus, draining: boolean): NodeState {
  if (draining) return "draining";
  return status.engine === "ready" || status.engine === "none" ? "ready" : "registered";
}

/** The engine and capacity part of what a node reports (the lease's `status`). */
function statusOf(m: NodeStatus): NodeStatus {
  return { engine: m.engine, models: m.models, maxConcurrent: m.maxConcurrent, freeSlots: m.freeSlots };
}

/** What a node sends about itself that the lease keeps: status, lifecycle state, conditions. */
type StatusReport = NodeStatus & { state?: ReportedState; conditions: NodeCondition[] };

function blockingNames(conditions: readonly NodeCondition[]): Set<string> {
  return new Set(blockingConditions(conditions).map((c) => c.condition));
}

function sameNames(a: ReadonlySet<string>, b: ReadonlySet<string>): boolean {
  return a.size === b.size && [...a].every((n) => b.has(n));
}

/** Whether the reported state or conditions (any field, not only the blocking set) differ. */
function reportChanged(
  before: { state: ReportedState | null; conditions: NodeCondition[] },
  lease: Lease,
): boolean {
  return (
    before.state !== lease.reportedState ||
    JSON.stringify(before.conditions) !== JSON.stringify(lease.conditions)
  );
}

/** The store columns of what a node reported, for startLease / updateLease. */
function reportColumns(lease: Lease) {
  return { ...lease.status, reportedState: lease.reportedState, conditions: lease.conditions };
}

/**
 * Take the status a node reported (at renewal or on change) and the state
 * it implies; returns the blocking condition names it had before, or null
 * when that set did not change.
 */
function applyStatus(lease: Lease, m: StatusReport): Set<string> | null {
  const before = blockingNames(lease.conditions);
  lease.status = statusOf(m);
  lease.state = stateFor(lease.status, lease.state === "draining");
  lease.reportedState = m.state ?? null;
  lease.conditions = m.conditions;
  return sameNames(before, blockingNames(lease.conditions)) ? null : before;
}

interface Retired {
  nodeId: string;
  epoch: number;
  code: "fenced" | "expired" | "revoked";
}

export class ControlPlane {
  readonly counters: Record<CounterName, number> = Object.fromEntries(COUNTERS.map((c) => [c, 0])) as Record<
    CounterName,
    number
  >;
  controlEndpoint = "";
  streamingEndpoint = "";

  readonly #o: ControlPlaneOptions;
  readonly #log: Logger;
  readonly #now: () => number;
  readonly #leases = new Map<string, Lease>(); // by nodeId: the current lease (live or expired)
  readonly #byRoutingId = new Map<string, Lease>();
  readonly #retired = new Map<string, Retired>(); // leaseId -> why it is no longer valid
  readonly #messageListeners = new Set<NodeMessageListener>();
  readonly #leaseListeners = new Set<LeaseListener>();
  readonly #blockingListeners = new Set<BlockingListener>();
  readonly #senders = new Map<zmq.Router, BatchSender>();
  readonly #challenges: RegisterChallenges;
  #control!: zmq.Router;
  #streaming!: zmq.Router;
  #unzap: Array<() => Promise<void>> = [];
  #loops: Promise<void>[] = [];
  #timers: NodeJS.Timeout[] = [];
  #flushed: Record<string, number> = {};
  #lastDropLog = new Map<string, number>();
  #closed = false;

  private constructor(o: ControlPlaneOptions) {
    this.#o = o;
    this.#log = o.logger.child({ component: "control-plane" });
    this.#now = o.now ?? Date.now;
    this.#challenges = new RegisterChallenges(this.#now);
  }

  static async start(o: ControlPlaneOptions): Promise<ControlPlane> {
    const cp = new ControlPlane(o);
    await cp.#start();
    return cp;
  }

  async #start(): Promise<void> {
    const instance = randomBytes(4).toString("hex");
    const authorize = (role: SocketRole) => (req: { publicKey: string | null; address: string }) => {
      const node = req.publicKey ? this.#o.store.nodeByPublicKey(req.publicKey) : null;
      if (!node || node.revokedAt !== null) {
        this.#count(
          "zapRefused",
          `${role}: CURVE key ${req.publicKey ?? "(none)"} from ${req.address} ${node ? `is node ${node.nodeId}, which was revoked` : "is not an enrolled node"}`,
        );
        return { allow: false, reason: node ? "revoked" : "not enrolled" };
      }
      this.counters.zapAdmitted++;
      return { allow: true, userId: node.nodeId };
    };
    const controlDomain = `xim.${instance}.control`;
    const streamingDomain = `xim.${instance}.streaming`;
    this.#unzap.push(await registerZapDomain(controlDomain, authorize("control"), this.#log));
    this.#unzap.push(await registerZapDomain(streamingDomain, authorize("streaming"), this.#log));
    this.#control = await openRouterSocket({
      serverKeys: this.#o.keys,
      zapDomain: controlDomain,
      bind: this.#o.controlBind,
      curve: this.#o.curve,
    });
    this.#streaming = await openRouterSocket({
      serverKeys: this.#o.keys,
      zapDomain: streamingDomain,
      bind: this.#o.streamingBind,
      curve: this.#o.curve,
    });
    this.controlEndpoint = this.#control.lastEndpoint ?? this.#o.controlBind;
    this.streamingEndpoint = this.#streaming.lastEndpoint ?? this.#o.streamingBind;
    this.#loadOrphanLeases();
    this.#loops.push(this.#receive(this.#control, "control"), this.#receive(this.#streaming, "streaming"));
    const check = this.#o.expiryCheckMs ?? 100;
    this.#timers.push(
      setInterval(
        guarded(this.#log, "lease expiry check", () => this.#expire()),
        check,
      ),
    );
    this.#timers.push(
      setInterval(
        guarded(this.#log, "counter flush", () => this.#flushCounters()),
        1000,
      ),
    );
    this.#timers.push(
      setInterval(
        guarded(this.#log, "revocation check", () => this.checkRevocations()),
        this.#o.revocationPollMs ?? REVOCATION_POLL_MS,
      ),
    );
  }

  /** Leases of the previous run are void, but they still expire on time if the node does not come back. */
  #loadOrphanLeases(): void {
    for (const n of this.#o.store.listNodes()) {
      if (!n.leaseId || n.state === null || n.state === "expired" || n.lastRenewal === null) continue;
      if (n.revokedAt !== null) continue;
      this.#leases.set(n.nodeId, {
        nodeId: n.nodeId,
        project: n.project,
        leaseId: n.leaseId,
        epoch: n.epoch,
        controlRoutingId: null,
        streamingRoutingId: null,
        leaseMs: n.leaseMs ?? 30_000,
        lastRenewal: n.lastRenewal,
        state: n.state,
        status: {
          engine: n.engine as NodeStatus["engine"],
          models: n.models,
          maxConcurrent: n.maxConcurrent,
          freeSlots: n.freeSlots,
        },
        hardware: null,
        agentVersion: n.agentVersion,
        // Conditions are live state: a node that has not reconnected reports none yet.
        reportedState: null,
        conditions: [],
      });
    }
  }

  // ---- public API for the inference path --------------------------------------------------

  /** Current leases, live and expired. */
  leases(): Lease[] {
    return [...this.#leases.values()];
  }

  lease(nodeId: string): Lease | undefined {
    return this.#leases.get(nodeId);
  }

  /** Nodes that may receive requests now: a live lease, engine ready, not draining, nothing blocking. */
  readyLeases(): Lease[] {
    return this.leases().filter(isAvailable);
  }

  /**
   * Send a message to a node with a live lease: `credit` goes on its streaming
   * socket (when it has one), everything else on control. False when the node
   * has no live lease or the message could not be queued. Never rejects, so
   * callers may fire and forget (`void cp.send(...)`).
   */
  async send(nodeId: string, message: Outgoing<RouterMessage>): Promise<boolean> {
    const lease = this.#leases.get(nodeId);
    if (!lease || lease.state === "expired" || !lease.controlRoutingId) return false;
    const stream = STREAM_PLANE_ROUTER_TYPES.has(message.type) && lease.streamingRoutingId;
    try {
      return await this.#sendTo(
        stream ? this.#streaming : this.#control,
        stream ? (lease.streamingRoutingId as string) : lease.controlRoutingId,
        message,
      );
    } catch (err) {
      this.#log.error(
        { err, nodeId, type: message.type },
        "a message to a node could not be encoded; dropped",
      );
      return false;
    }
  }

  /**
   * End the lease of every connected node revoked in the database (by
   * `xim router nodes revoke`): what the poll timer runs; tests call it
   * directly. A database error is logged and tried again at the next poll.
   */
  checkRevocations(): void {
    if (this.#closed || this.#leases.size === 0) return;
    let revoked: Set<string>;
    try {
      revoked = this.#o.store.revokedNodeIds();
    } catch (err) {
      this.#log.warn({ err }, "could not read the revoked nodes; trying again at the next poll");
      return;
    }
    for (const lease of [...this.#leases.values()]) if (revoked.has(lease.nodeId)) this.#revoke(lease);
  }

  /** Every valid message from a node with a live lease that the control plane does not consume itself. */
  onNodeMessage(listener: NodeMessageListener): () => void {
    this.#messageListeners.add(listener);
    return () => this.#messageListeners.delete(listener);
  }

  /** Lease state changes: registered, ready, draining, expired. */
  onLeaseChange(listener: LeaseListener): () => void {
    this.#leaseListeners.add(listener);
    return () => this.#leaseListeners.delete(listener);
  }

  /** A live node's set of blocking conditions changed (a renewal, a node_status or a registration). */
  onBlockingChange(listener: BlockingListener): () => void {
    this.#blockingListeners.add(listener);
    return () => this.#blockingListeners.delete(listener);
  }

  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    for (const t of this.#timers) clearInterval(t);
    this.#flushCounters();
    this.#control?.close();
    this.#streaming?.close();
    await Promise.allSettled(this.#loops);
    for (const un of this.#unzap) await un();
  }

  // ---- internals ----------------------------------------------------------------------------

  #count(name: CounterName, detail: string): void {
    this.counters[name]++;
    const now = this.#now();
    const last = this.#lastDropLog.get(name) ?? 0;
    if (now - last >= 10_000) {
      this.#lastDropLog.set(name, now);
      this.#log.warn({ counter: name, total: this.counters[name] }, detail);
    }
  }

  #flushCounters(): void {
    const deltas: Record<string, number> = {};
    for (const name of COUNTERS) {
      deltas[name] = this.counters[name] - (this.#flushed[name] ?? 0);
      this.#flushed[name] = this.counters[name];
    }
    try {
      this.#o.store.addCounters(deltas);
    } catch (err) {
      this.#log.warn({ err }, "could not save counters");
    }
  }

  /**
   * Queue a message for one node's connection. Messages queued in one turn
   * leave as one frame per connection (transport/batch-sender.ts): the
   * dispatches and credits of many streams cost one send each per node.
   */
  #sendTo(socket: zmq.Router, routingId: string, message: Outgoing<RouterMessage>): Promise<boolean> {
    let sender = this.#senders.get(socket);
    if (!sender) {
      sender = new BatchSender(
        (frame, to) => socket.send([to, frame]),
        () => socket.closed,
      );
      this.#senders.set(socket, sender);
    }
    return sender.push(encodeMessage(message), routingId);
  }

  async #receive(socket: zmq.Router, role: SocketRole): Promise<void> {
    try {
      for await (const frames of socket) {
        try {
          this.#handleFrames(frames, role);
        } catch (err) {
          this.#log.error({ err }, "error while handling a node message; dropped");
        }
      }
    } catch (err) {
      if (!this.#closed) this.#log.error({ err, role }, "receive loop stopped");
    }
  }

  /** [routingId, payload, payload, ...]: a node may send several messages in one ZeroMQ message. */
  #handleFrames(frames: Buffer[], role: SocketRole): void {
    if (frames.length < 2) {
      this.#count("malformed", `${role}: message without a payload frame dropped`);
      return;
    }
    const routingId = frames[0].toString("latin1");
    for (let i = 1; i < frames.length; i++) {
      try {
        this.#handlePayload(frames[i], routingId, role);
      } catch (err) {
        this.#log.error({ err }, "error while handling a node message; dropped");
      }
    }
  }

  #handlePayload(payload: Buffer, routingId: string, role: SocketRole): void {
    for (const result of decodeNodeMessages(payload)) this.#handleResult(result, routingId, role);
  }

  #handleResult(result: DecodeResult<NodeMessage>, routingId: string, role: SocketRole): void {
    if (!result.ok) {
      this.#dropped(result, routingId, role);
      return;
    }
    const m = result.message;
    const socket = role === "control" ? this.#control : this.#streaming;
    switch (m.type) {
      case "ping":
        void this.#sendTo(socket, routingId, { type: "pong", nonce: m.nonce, sentAtMs: m.sentAtMs });
        return;
      case "register":
        if (role !== "control") this.#count("invalid", "register on the streaming socket dropped");
        else this.#register(m, routingId);
        return;
      case "lease_renew":
        this.#renew(m, routingId, socket);
        return;
      default:
        this.#fromBound(m, routingId, role);
    }
  }

  #dropped(
    result: Extract<DecodeResult<NodeMessage>, { ok: false }>,
    routingId: string,
    role: SocketRole,
  ): void {
    if (result.reason === "version") {
      this.#count("versionMismatch", `${role}: ${result.detail}`);
      if (result.type === "register" && role === "control" && typeof result.peerVersion === "number") {
        const message = versionMismatchMessage(result.peerVersion, PROTOCOL_VERSION);
        void this.#sendTo(this.#control, routingId, {
          type: "register_refused",
          code: "version_mismatch",
          message,
          upgrade: upgradeSide(result.peerVersion, PROTOCOL_VERSION),
          routerProtocolVersion: PROTOCOL_VERSION,
        });
      }
      return;
    }
    const counter: CounterName = result.reason === "unknown_type" ? "unknownType" : result.reason;
    this.#count(counter, `${role}: dropped a ${result.reason} message: ${result.detail}`);
  }

  #refuse(
    routingId: string,
    code: "unknown_node" | "revoked" | "bad_proof" | "invalid" | "flow_control",
    message: string,
  ): void {
    this.#log.warn({ code }, `registration refused: ${message}`);
    const refusal = {
      type: "register_refused" as const,
      code,
      message,
      upgrade: null,
      routerProtocolVersion: PROTOCOL_VERSION,
    };
    void this.#sendTo(this.#control, routingId, refusal);
  }

  #register(m: NodeMessageOf<"register">, routingId: string): void {
    const node = this.#o.store.getNode(m.nodeId);
    if (!node) {
      this.#refuse(routingId, "unknown_node", `node ${m.nodeId} is not enrolled with this router`);
      return;
    }
    if (node.revokedAt !== null) {
      this.#refuse(routingId, "revoked", `node ${m.nodeId} was revoked`);
      return;
    }
    if (m.challenge === null) {
      void this.#sendTo(this.#control, routingId, {
        type: "register_challenge",
        ...this.#challenges.issue(routingId),
      });
      return;
    }
    if (!this.#challenges.take(routingId, m.challenge)) {
      this.counters.badProof++;
      this.#refuse(
        routingId,
        "bad_proof",
        `register for ${m.nodeId} answers no challenge this router gave its connection (a replayed or late register); register again`,
      );
      return;
    }
    const proofInput = {
      nodeId: m.nodeId,
      nonce: m.nonce,
      challenge: m.challenge,
      controlRoutingId: m.controlRoutingId,
      streamingRoutingId: m.streamingRoutingId,
    };
    const shared = curveSharedSecret(this.#o.keys, node.publicKey);
    if (routingId !== m.controlRoutingId || !verifyRegisterProof(shared, proofInput, m.proof)) {
      this.counters.badProof++;
      this.#refuse(
        routingId,
        "bad_proof",
        `register for ${m.nodeId} does not prove possession of its enrolled key`,
      );
      return;
    }
    const windowProblem = registerWindowProblem(m.windowBytes, this.#o.flowWindowBytes ?? 0);
    if (windowProblem) {
      this.#refuse(routingId, "flow_control", `node ${m.nodeId} cannot register: ${windowProblem}`);
      return;
    }
    const now = this.#now();
    const previous = this.#leases.get(m.nodeId);
    if (previous) this.#retire(previous);
    const leaseMs = Math.min(MAX_LEASE_MS, Math.max(MIN_LEASE_MS, m.requestedLeaseMs));
    const status = statusOf(m);
    const state = stateFor(status, false);
    const leaseId = randomBytes(16).toString("hex");
    const report = { reportedState: m.state ?? null, conditions: m.conditions };
    const epoch = this.#o.store.startLease(
      m.nodeId,
      leaseId,
      leaseMs,
      now,
      { state, ...status, ...report },
      m.hardware,
    );
    const lease: Lease = {
      nodeId: m.nodeId,
      project: node.project,
      leaseId,
      epoch,
      controlRoutingId: m.controlRoutingId,
      streamingRoutingId: m.streamingRoutingId,
      leaseMs,
      lastRenewal: now,
      state,
      status,
      hardware: m.hardware,
      agentVersion: m.agentVersion,
      lastEpoch: m.lastEpoch,
      ...report,
    };
    this.#leases.set(m.nodeId, lease);
    this.#byRoutingId.set(m.controlRoutingId, lease);
    if (m.streamingRoutingId) this.#byRoutingId.set(m.streamingRoutingId, lease);
    this.counters.registered++;
    this.#log.info({ nodeId: m.nodeId, epoch, leaseMs, state, lastEpoch: m.lastEpoch }, "node registered");
    void this.#sendTo(this.#control, routingId, {
      type: "register_ack",
      nodeId: m.nodeId,
      leaseId,
      epoch,
      leaseDurationMs: leaseMs,
      renewalIntervalMs: Math.max(50, Math.min(m.renewalIntervalMs, Math.floor(leaseMs / 2))),
      routerVersion: XIM_VERSION,
      routerTimeMs: this.#now(),
    });
    this.#emitLease(lease, previous?.state ?? null);
    const before = previous && !isOffline(previous) ? blockingNames(previous.conditions) : new Set<string>();
    this.#blockingChanged(lease, before);
  }

  /** A node's older lease, replaced by its new registration: fenced (unless it was already gone), and retired. */
  #retire(previous: Lease): void {
    this.#unbind(previous);
    // An orphan (a lease of the previous router run, no connection) is replaced, not fenced.
    if (previous.state !== "expired" && previous.controlRoutingId !== null) {
      this.counters.fenced++;
      this.#log.info(
        { nodeId: previous.nodeId, oldEpoch: previous.epoch },
        "older lease fenced by a new registration",
      );
    }
    this.#retired.set(previous.leaseId, {
      nodeId: previous.nodeId,
      epoch: previous.epoch,
      code: previous.state === "expired" ? "expired" : "fenced",
    });
  }

  #unbind(lease: Lease): void {
    if (lease.controlRoutingId && this.#byRoutingId.get(lease.controlRoutingId) === lease)
      this.#byRoutingId.delete(lease.controlRoutingId);
    if (lease.streamingRoutingId && this.#byRoutingId.get(lease.streamingRoutingId) === lease)
      this.#byRoutingId.delete(lease.streamingRoutingId);
  }

  #renew(m: NodeMessageOf<"lease_renew">, routingId: string, socket: zmq.Router): void {
    const bound = this.#byRoutingId.get(routingId);
    if (!bound || bound.leaseId !== m.leaseId || bound.state === "expired") {
      const retired = this.#retired.get(m.leaseId);
      if (retired?.code === "revoked") {
        // A revoked node that kept its connection: tell it again, renew nothing.
        this.#count("unbound", `${retired.nodeId}: renewal of a revoked node's lease refused`);
        void this.#sendTo(socket, routingId, {
          type: "node_revoked",
          nodeId: retired.nodeId,
          message: REVOKED_MESSAGE,
        });
        return;
      }
      const current = retired ? this.#leases.get(retired.nodeId) : undefined;
      const code =
        bound?.state === "expired" && bound.leaseId === m.leaseId
          ? "expired"
          : (retired?.code ?? "unknown_lease");
      if (code === "fenced") this.counters.fenced++;
      void this.#sendTo(socket, routingId, {
        type: "lease_refused",
        leaseId: m.leaseId,
        epoch: m.epoch,
        code,
        message:
          code === "expired"
            ? "the lease expired: no renewal arrived within its duration; register again"
            : code === "fenced"
              ? `a newer registration (epoch ${current?.epoch ?? "?"}) replaced this lease`
              : "this router does not know the lease (it restarted, or the lease is from another router); register again",
        currentEpoch: current?.epoch ?? bound?.epoch ?? 0,
      });
      return;
    }
    const lease = bound;
    lease.lastRenewal = this.#now();
    this.counters.renewed++;
    const previous = lease.state;
    const blockedBefore = applyStatus(lease, m);
    this.#o.store.updateLease(lease.nodeId, {
      lastRenewal: lease.lastRenewal,
      state: lease.state,
      ...reportColumns(lease),
    });
    void this.#sendTo(socket, routingId, {
      type: "lease_ack",
      leaseId: lease.leaseId,
      epoch: lease.epoch,
      seq: m.seq,
      expiresInMs: lease.leaseMs,
      routerTimeMs: this.#now(),
    });
    if (previous !== lease.state) this.#emitLease(lease, previous);
    if (blockedBefore) this.#blockingChanged(lease, blockedBefore);
  }

  #fromBound(m: NodeMessage, routingId: string, role: SocketRole): void {
    const lease = this.#byRoutingId.get(routingId);
    if (!lease || lease.state === "expired") {
      this.#count("unbound", `${role}: ${m.type} from a connection without a live lease dropped`);
      return;
    }
    if ("leaseId" in m && (m.leaseId !== lease.leaseId || m.epoch !== lease.epoch)) {
      this.counters.fenced++;
      return;
    }
    const previous = lease.state;
    let blockedBefore: Set<string> | null = null;
    switch (m.type) {
      case "node_status": {
        const reportedBefore = { state: lease.reportedState, conditions: lease.conditions };
        blockedBefore = applyStatus(lease, m);
        // Free slots change with every request: keep them in memory (renewals persist them);
        // write through only what `xim router nodes` must show at once.
        if (lease.state !== previous || m.detail || reportChanged(reportedBefore, lease)) {
          this.#o.store.updateLease(lease.nodeId, {
            state: lease.state,
            ...reportColumns(lease),
            stateReason: m.detail ? `${m.detail.reason}: ${m.detail.message}` : null,
          });
        }
        break;
      }
      case "drain":
        lease.state = "draining";
        this.#o.store.updateLease(lease.nodeId, { state: "draining", stateReason: m.reason });
        this.#log.info({ nodeId: lease.nodeId, reason: m.reason, graceMs: m.graceMs }, "node draining");
        break;
      case "lease_release":
        lease.state = "expired";
        lease.offlineSince = this.#now();
        lease.offlineReason = "it gave its lease back";
        this.#unbind(lease);
        this.#retired.set(lease.leaseId, { nodeId: lease.nodeId, epoch: lease.epoch, code: "expired" });
        this.#o.store.updateLease(lease.nodeId, { state: "expired", stateReason: RELEASED_BY_NODE });
        this.#log.info({ nodeId: lease.nodeId, epoch: lease.epoch }, "lease released");
        break;
    }
    for (const listener of this.#messageListeners) {
      try {
        listener(lease, m);
      } catch (err) {
        this.#log.error({ err }, "node message listener failed");
      }
    }
    if (previous !== lease.state) this.#emitLease(lease, previous);
    if (blockedBefore) this.#blockingChanged(lease, blockedBefore);
  }

  #expire(): void {
    const now = this.#now();
    for (const lease of this.#leases.values()) {
      if (lease.state === "expired" || now - lease.lastRenewal <= lease.leaseMs) continue;
      const previous = lease.state;
      lease.state = "expired";
      lease.offlineSince = now;
      lease.offlineReason = "its lease expired";
      this.#unbind(lease);
      this.#retired.set(lease.leaseId, { nodeId: lease.nodeId, epoch: lease.epoch, code: "expired" });
      this.counters.expired++;
      try {
        this.#o.store.updateLease(lease.nodeId, {
          state: "expired",
          stateReason: `no renewal for ${now - lease.lastRenewal} ms (lease ${lease.leaseMs} ms)`,
        });
      } catch (err) {
        this.#log.warn({ err }, "could not save an expiry");
      }
      this.#log.warn(
        {
          nodeId: lease.nodeId,
          epoch: lease.epoch,
          silentMs: now - lease.lastRenewal,
          leaseMs: lease.leaseMs,
        },
        "lease expired",
      );
      this.#emitLease(lease, previous);
    }
    // Keep the retired map bounded: it only needs recent leases.
    if (this.#retired.size > 10_000) {
      for (const key of [...this.#retired.keys()].slice(0, 5000)) this.#retired.delete(key);
    }
  }

  /**
   * The operator revoked this node: tell it on its live connection (before
   * unbinding, which stops everything it sends and everything sent to it),
   * forget the lease (a revoked node never registers again), and let the
   * listeners end its streams.
   */
  #revoke(lease: Lease): void {
    const previous = lease.state;
    if (lease.controlRoutingId !== null)
      void this.#sendTo(this.#control, lease.controlRoutingId, {
        type: "node_revoked",
        nodeId: lease.nodeId,
        message: REVOKED_MESSAGE,
      });
    lease.state = "expired";
    lease.revoked = true;
    this.counters.revoked++;
    this.#unbind(lease);
    this.#leases.delete(lease.nodeId);
    this.#retired.set(lease.leaseId, { nodeId: lease.nodeId, epoch: lease.epoch, code: "revoked" });
    try {
      this.#o.store.updateLease(lease.nodeId, { state: "expired", stateReason: "revoked by the operator" });
    } catch (err) {
      this.#log.warn({ err }, "could not save the end of a revoked node's lease");
    }
    this.#log.warn(
      { nodeId: lease.nodeId, epoch: lease.epoch, wasConnected: lease.controlRoutingId !== null },
      "node revoked by the operator: lease ended, its streams fail, its key is refused from now on",
    );
    this.#emitLease(lease, previous);
  }

  /**
   * Log the change of a node's blocking set (once per change: each condition
   * that now blocks it, and the clearing) and tell the listeners, which stop
   * or resume dispatch (queue.ts) and end the node's streams (dispatch.ts).
   */
  #blockingChanged(lease: Lease, before: ReadonlySet<string>): void {
    const now = blockingConditions(lease.conditions);
    if (sameNames(before, new Set(now.map((c) => c.condition)))) return;
    for (const c of now)
      if (!before.has(c.condition))
        this.#log.warn(
          { nodeId: lease.nodeId, condition: c.condition, message: c.message, fix: c.fix },
          "node blocked by a condition: no new requests go to it",
        );
    const cleared = [...before].filter((name) => !now.some((c) => c.condition === name));
    if (cleared.length > 0)
      this.#log.info(
        { nodeId: lease.nodeId, cleared, stillBlocking: now.map((c) => c.condition) },
        now.length === 0
          ? "node's blocking conditions cleared: dispatch resumes"
          : "node's blocking conditions changed",
      );
    for (const listener of this.#blockingListeners) {
      try {
        listener(lease, before);
      } catch (err) {
        this.#log.error({ err }, "blocking condition listener failed");
      }
    }
  }

  #emitLease(lease: Lease, previous: NodeState | null): void {
    for (const listener of this.#leaseListeners) {
      try {
        listener(lease, previous);
      } catch (err) {
        this.#log.error({ err }, "lease listener failed");
      }
    }
  }
}
