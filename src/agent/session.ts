/**
 * @module The node's session with the router: open the channels, register
 * (a proof of key possession over the router's single-use challenge), and
 * answer the router's messages; the lease loop (lease-loop.ts) renews the
 * lease and comes back after a router restart or network loss with
 * jittered exponential backoff and a new epoch. The session sends its
 * status with the node's state and conditions. It never touches the engine: losing the router only
 * means reconnecting. `runNode` is what `xim run` calls; the inference path
 * plugs in through `status` (what to report) and `onMessage` (dispatch,
 * cancel, credit, drain_request, model_assign) and sends stream messages
 * with `send`; a model assignment pulls over `modelChannel` and reports
 * with `reportModelProgress`. A node the operator revoked (`node_revoked`,
 * or `register_refused` code `revoked`) stops retrying: the session ends
 * with an XimError whose exit code is ExitCode.revoked.
 */

import { randomBytes } from "node:crypto";
import { cpus, hostname, totalmem } from "node:os";
import { sleep as realSleep, type Sleep } from "../core/backoff.ts";
import type { Config } from "../core/config/schema.ts";
import { ExitCode, XimError } from "../core/errors.ts";
import { contain, guarded } from "../core/guard.ts";
import type { Logger } from "../core/log.ts";
import { safeText } from "../core/terminal-text.ts";
import { XIM_VERSION } from "../core/version.ts";
import { diagnoseRouter, type RouterDiagnosis } from "../enrollment/router-diagnosis.ts";
import { type EnrollmentState, revokedError } from "../enrollment/state.ts";
import { ReceiptBook } from "../models/receipts.ts";
import { PullError } from "../models/source.ts";
import type { NodeCondition, NodeState } from "../protocol/conditions.ts";
import type {
  Hardware,
  NodeMessage,
  NodeMessageOf,
  NodeStatus,
  Outgoing,
  RouterMessage,
  RouterMessageOf,
} from "../protocol/messages.ts";
import type { ModelChannel } from "../protocol/model-transfer.ts";
import { curveSharedSecret, registerProof } from "../transport/curve.ts";
import { NODE_CLOSE_LINGER_MS } from "../transport/sockets.ts";
import type { RouterClockSample } from "./conditions/clock-skew.ts";
import { type ChannelCounters, NodeChannel, newChannelCounters } from "./control.ts";
import { drainNode, serveUntilStopped } from "./drain.ts";
import { registerTimeoutMs, renewalIntervalMs } from "./lease.ts";
import { type LeaseInfo, loudAttempt, type RegisterOutcome, runLeaseLoop } from "./lease-loop.ts";
import { ensureEnrolled } from "./node-enrollment.ts";

export type SessionSettings = Pick<
  Config,
  "leaseRenewalIntervalMs" | "leaseDurationMs" | "streamingSocketEnabled" | "maxConcurrent"
>;

export interface NodeSessionOptions {
  state: EnrollmentState;
  settings: SessionSettings;
  logger: Logger;
  /** What the node reports at registration and each renewal; defaults to "no engine". */
  status?: () => NodeStatus;
  /** The node's conditions now (src/protocol/conditions.ts), sent with register, renewals and node_status; default none. */
  conditions?: () => NodeCondition[];
  /** The node's lifecycle state now (src/agent/node-state.ts), sent with the status; default: not said. */
  nodeState?: () => NodeState;
  hardware?: Hardware;
  /** The node's credit window per stream, told at registration (0: flow control off); default 65536. */
  windowBytes?: number;
  /** dispatch, cancel, credit and drain_request from the router. */
  onMessage?: (message: RouterMessage) => void;
  onRegistered?: (lease: LeaseInfo) => void;
  onLost?: (reason: string) => void;
  /** The lease was gained or let go (refused, lost, revoked, stopped): the node's state follows. */
  onLeaseChange?: (lease: LeaseInfo | null) => void;
  /** Each register_ack and lease_ack that carries the router's time, with this node's send and receipt times (clock_skew). */
  onRouterClock?: (sample: RouterClockSample) => void;
  sleep?: Sleep;
  random?: () => number;
  now?: () => number;
  /** Why the router does not answer (refused, dropped, another router, ...); default diagnoseRouter. */
  diagnose?: () => Promise<RouterDiagnosis>;
}

/** A registration still unanswered after this long gets a diagnosis in the log: seconds, not the 20 s timeout. */
export const DIAGNOSE_AFTER_MS = 3000;

export function defaultHardware(): Hardware {
  return {
    // The router refuses control characters (they would reach operators' terminals).
    hostname: safeText(hostname(), { maxLength: 255 }),
    platform: process.platform,
    arch: process.arch,
    cpus: cpus().length,
    memoryBytes: totalmem(),
    gpus: [],
  };
}

export class NodeSession {
  readonly counters: ChannelCounters = newChannelCounters();
  /** Lease activity, for the node's metrics: renewals acknowledged, registrations after the first. */
  readonly leaseStats = { renewalsAcked: 0, registrations: 0 };
  readonly #o: NodeSessionOptions;
  readonly #log: Logger;
  readonly #sleep: Sleep;
  readonly #diagnose: () => Promise<RouterDiagnosis>;
  readonly #now: () => number;
  #channel: NodeChannel | null = null;
  #lease: LeaseInfo | null = null;
  #lastEpoch = 0;
  #lastAck = 0;
  /** When the last register and the last renewal (by seq) were sent, for the router's clock in their acks. */
  #registerSentAt = 0;
  #renewSent = { seq: -1, at: 0 };
  #refused: string | null = null;
  /** Set when the router said this node was revoked: the loop ends with it. */
  #revoked: XimError | null = null;
  /** What the router said when it revoked this node (kept in the config folder by runNode). */
  revokedBecause: string | null = null;
  #pendingRegister: ((o: RegisterOutcome) => void) | null = null;
  #wake = new AbortController();
  #stopping = false;
  #draining = false;
  #run: Promise<void> | null = null;
  #lastAuthLog = Number.NEGATIVE_INFINITY;
  readonly #modelReplies = new Map<string, (reply: unknown) => void>();
  /** Receipts of the model replies read, acknowledged with the next model request. */
  readonly #modelReceipts = new ReceiptBook();

  constructor(o: NodeSessionOptions) {
    this.#o = o;
    this.#log = o.logger.child({ component: "session", nodeId: o.state.nodeId });
    this.#sleep = o.sleep ?? realSleep;
    this.#diagnose = o.diagnose ?? (() => diagnoseRouter(o.state, { timeoutMs: DIAGNOSE_AFTER_MS }));
    this.#now = o.now ?? Date.now;
  }

  /** The current lease, or null while not registered. */
  get lease(): LeaseInfo | null {
    return this.#lease;
  }

  /** Runs until stop(); rejects with an XimError when the router refuses this node for good. */
  start(): Promise<void> {
    this.#run ??= this.#loop();
    return this.#run;
  }

  /** Send a message to the router now (stream messages go on the streaming socket). False when not connected. */
  send(message: Outgoing<NodeMessage>): Promise<boolean> {
    return this.#channel ? this.#channel.send(message) : Promise.resolve(false);
  }

  /** Report the engine state and free slots now instead of at the next renewal. */
  reportStatus(detail?: Extract<NodeMessage, { type: "node_status" }>["detail"]): Promise<boolean> {
    if (!this.#lease) return Promise.resolve(false);
    return this.send({
      type: "node_status",
      leaseId: this.#lease.leaseId,
      epoch: this.#lease.epoch,
      ...this.#status(),
      ...(detail ? { detail } : {}),
    });
  }

  /**
   * Report how the pull of an assigned model goes (`model_progress`, on the
   * control socket). False when not registered: the caller reports again
   * after the next registration.
   */
  reportModelProgress(
    p: Omit<Outgoing<NodeMessageOf<"model_progress">>, "type" | "leaseId" | "epoch">,
  ): Promise<boolean> {
    if (!this.#lease) return Promise.resolve(false);
    return this.send({
      type: "model_progress",
      leaseId: this.#lease.leaseId,
      epoch: this.#lease.epoch,
      ...p,
    });
  }

  /**
   * A ModelChannel over this session (src/models): each model request goes to
   * the router on the control socket and its reply comes back on the streaming
   * socket. Rejects with a retryable PullError when not registered or when no
   * reply comes within `timeoutMs`.
   */
  modelChannel(timeoutMs = 30_000): ModelChannel {
    return (request, signal) =>
      new Promise((resolve, reject) => {
        if (!this.#lease) {
          reject(
            new PullError("XIM_PULL_UNAVAILABLE", "not connected to the router (no lease yet)", {
              retryable: true,
              retryAfterMs: 1000,
            }),
          );
          return;
        }
        const settle = () => {
          clearTimeout(timer);
          signal?.removeEventListener("abort", onAbort);
          this.#modelReplies.delete(request.requestId);
        };
        const onAbort = () => {
          settle();
          reject(new PullError("XIM_PULL_ABORTED", "the model request was cancelled", { retryable: false }));
        };
        const timer = setTimeout(() => {
          settle();
          reject(
            new PullError(
              "XIM_PULL_TIMEOUT",
              `the router did not answer a model request within ${timeoutMs} ms`,
              { retryable: true },
            ),
          );
        }, timeoutMs);
        signal?.addEventListener("abort", onAbort, { once: true });
        this.#modelReplies.set(request.requestId, (reply) => {
          settle();
          resolve(reply);
        });
        const receipts = this.#modelReceipts.take();
        void this.send({ type: "model_request", request: { ...request, receipts } }).then((sent) => {
          if (!sent) {
            this.#modelReceipts.giveBack(receipts);
            settle();
            reject(
              new PullError("XIM_PULL_UNAVAILABLE", "could not queue the model request to the router", {
                retryable: true,
              }),
            );
          }
        });
      });
  }

  /** Tell the router to send no new requests; the lease is kept until stop(). */
  async drain(reason: string, graceMs: number): Promise<boolean> {
    this.#draining = true;
    if (!this.#lease) return false;
    return this.send({
      type: "drain",
      leaseId: this.#lease.leaseId,
      epoch: this.#lease.epoch,
      reason,
      graceMs,
    });
  }

  /**
   * Release the lease (when held) and close the sockets. The contract that
   * replaces a pause: the release, and every stream message whose send
   * resolved before this call, are in the sockets' queues; the close keeps
   * them for NODE_CLOSE_LINGER_MS to leave, so a router that is there gets
   * them and one that is gone delays the process's exit by at most that.
   */
  async stop(): Promise<void> {
    if (this.#stopping) return this.#run ?? undefined;
    this.#stopping = true;
    if (this.#lease && this.#channel) {
      await this.#channel.send({
        type: "lease_release",
        leaseId: this.#lease.leaseId,
        epoch: this.#lease.epoch,
      });
    }
    this.#pendingRegister?.({ kind: "retry", reason: "stopping" });
    this.#wake.abort();
    await this.#run?.catch(() => undefined);
    await this.#channel?.close(NODE_CLOSE_LINGER_MS);
    this.#channel = null;
  }

  /** The status fields of register, renewals and node_status: the engine's, and the node's conditions. */
  #status(): NodeStatus & { conditions: NodeCondition[] } {
    const conditions = this.#o.conditions?.() ?? [];
    const state = this.#o.nodeState?.();
    const said = { conditions, ...(state ? { state } : {}) };
    if (this.#o.status) return { ...this.#o.status(), ...said };
    const slots = this.#o.settings.maxConcurrent ?? 0;
    return { engine: "none", models: [], maxConcurrent: slots, freeSlots: slots, ...said };
  }

  #setLease(lease: LeaseInfo | null): void {
    if (lease === this.#lease) return;
    this.#lease = lease;
    this.#o.onLeaseChange?.(lease);
  }

  #interruptibleSleep(ms: number): Promise<void> {
    if (this.#wake.signal.aborted) this.#wake = new AbortController();
    return this.#sleep(ms, this.#wake.signal);
  }

  #loop(): Promise<void> {
    return runLeaseLoop(
      {
        log: this.#log,
        endpoint: this.#o.state.controlEndpoint,
        stopping: () => this.#stopping,
        revoked: () => this.#revoked,
        refused: () => this.#refused !== null,
        register: (attempt) => {
          const registering = this.#register(this.#connect());
          if (loudAttempt(attempt)) this.#diagnoseIfSlow(registering, attempt);
          return registering;
        },
        lease: () => this.#lease,
        dropLease: () => this.#setLease(null),
        lastAckAt: () => this.#lastAck,
        renew: (lease, seq) => {
          this.#renewSent = { seq, at: this.#now() };
          return this.send({
            type: "lease_renew",
            leaseId: lease.leaseId,
            epoch: lease.epoch,
            seq,
            ...this.#status(),
          });
        },
        disconnect: async () => {
          await this.#channel?.close();
          this.#channel = null;
        },
        sleep: (ms) => this.#interruptibleSleep(ms),
        now: this.#now,
        random: this.#o.random,
        onLost: this.#o.onLost,
      },
      this.#o.settings.leaseRenewalIntervalMs,
    );
  }

  /** The connection to the router: the current one, or a new one with new routing ids. */
  #connect(): NodeChannel {
    this.#channel ??= new NodeChannel({
      state: this.#o.state,
      streaming: this.#o.settings.streamingSocketEnabled,
      logger: this.#log,
      counters: this.counters,
      onMessage: (m) => this.#onMessage(m),
      onAuthFailure: (detail) => this.#authFailed(detail),
    });
    return this.#channel;
  }

  #authFailed(detail: string): void {
    // libzmq retries the handshake every few hundred ms: say it once per 30 s.
    const now = this.#now();
    if (now - this.#lastAuthLog < 30_000) return;
    this.#lastAuthLog = now;
    this.#log.error(
      {
        failures: this.counters.authFailures,
        hint: "The router does not know this node's key, or its operator revoked this node: enroll again with a new join key ('xim enroll --join-key ... --force'), or check that the router's state was not reset.",
      },
      detail,
    );
  }

  /**
   * When a registration has no answer after DIAGNOSE_AFTER_MS, find out why
   * (the same probe as `xim doctor`'s router-reachable) and say it with the
   * endpoint and the fix, long before the attempt times out.
   */
  #diagnoseIfSlow(registering: Promise<RegisterOutcome>, attempt: number): void {
    let answered = false;
    const settle = () => {
      answered = true;
    };
    registering.then(settle, settle);
    const work = this.#sleep(DIAGNOSE_AFTER_MS).then(async () => {
      if (answered || this.#stopping) return;
      const d = await this.#diagnose();
      if (answered || this.#stopping) return;
      const hint = "run 'xim doctor' for every check of this node";
      if (d.ok) {
        this.#log.warn(
          { attempt, endpoint: d.endpoint, pingMs: d.rttMs, hint },
          "the router answers pings but not this node's registration yet (overloaded, or a version it does not speak); still trying",
        );
        return;
      }
      this.#log.error(
        { attempt, endpoint: d.endpoint, problem: d.problem, fix: d.fix, hint },
        `cannot register with the router at ${d.endpoint}: ${d.detail}; still trying`,
      );
    });
    contain(this.#log, "diagnosing the router connection", work);
  }

  /**
   * Register in two rounds: the first register carries no challenge and
   * is answered with one; the second proves the key over it (the router
   * takes a challenge once, so a register seen on the wire is worthless).
   */
  async #register(channel: NodeChannel): Promise<RegisterOutcome> {
    const first = await this.#sendRegister(channel, null);
    if (first.kind !== "challenge") return first;
    const second = await this.#sendRegister(channel, first.challenge);
    return second.kind === "challenge"
      ? { kind: "retry", reason: "the router asked for a second challenge" }
      : second;
  }

  async #sendRegister(channel: NodeChannel, challenge: string | null): Promise<RegisterOutcome> {
    const { state, settings } = this.#o;
    const nonce = randomBytes(16).toString("hex");
    const proof = registerProof(curveSharedSecret(state.keys, state.routerPublicKey), {
      nodeId: state.nodeId,
      nonce,
      challenge,
      controlRoutingId: channel.controlRoutingId,
      streamingRoutingId: channel.streamingRoutingId,
    });
    this.#refused = null;
    this.#registerSentAt = this.#now();
    const answer = new Promise<RegisterOutcome>((resolve) => {
      this.#pendingRegister = resolve;
    });
    await channel.send({
      type: "register",
      nodeId: state.nodeId,
      lastEpoch: this.#lastEpoch,
      nonce,
      challenge,
      proof,
      controlRoutingId: channel.controlRoutingId,
      streamingRoutingId: channel.streamingRoutingId,
      agentVersion: XIM_VERSION,
      hardware: this.#o.hardware ?? defaultHardware(),
      ...this.#status(),
      requestedLeaseMs: settings.leaseDurationMs,
      renewalIntervalMs: settings.leaseRenewalIntervalMs,
      windowBytes: this.#o.windowBytes ?? 65536,
    });
    const timeout = registerTimeoutMs(settings.leaseRenewalIntervalMs, settings.leaseDurationMs);
    const timer = this.#interruptibleSleep(timeout).then((): RegisterOutcome => ({ kind: "timeout" }));
    const outcome = await Promise.race([answer, timer]);
    this.#pendingRegister = null;
    return outcome;
  }

  #onMessage(m: RouterMessage): void {
    switch (m.type) {
      case "register_ack":
        this.#registered(m);
        return;
      case "register_refused":
        this.#registerRefused(m);
        return;
      case "register_challenge":
        this.#pendingRegister?.({ kind: "challenge", challenge: m.challenge });
        return;
      case "lease_ack":
        if (this.#lease && m.leaseId === this.#lease.leaseId) {
          this.#lastAck = this.#now();
          this.leaseStats.renewalsAcked++;
          if (m.seq === this.#renewSent.seq) this.#routerClock(m.routerTimeMs, this.#renewSent.at);
        }
        return;
      case "lease_refused":
        if (!this.#lease || m.leaseId !== this.#lease.leaseId) return;
        this.#log.warn(
          { code: m.code, epoch: m.epoch, currentEpoch: m.currentEpoch },
          `lease refused: ${m.message}; registering again`,
        );
        this.#refused = m.code;
        this.#wake.abort();
        // unknown_lease: a new router process, which knows none of this node's streams (the relay ends them).
        if (m.code === "unknown_lease") this.#o.onMessage?.(m);
        return;
      case "pong":
        return;
      case "node_revoked":
        if (m.nodeId === this.#o.state.nodeId) this.#revokedByRouter(m.message);
        return;
      case "model_reply":
        // Read, whether or not its request is still waiting (it may have timed out).
        if (m.reply.type !== "model_error") this.#modelReceipts.note(m.reply);
        this.#modelReplies.get(m.reply.requestId)?.(m.reply);
        return;
      case "drain_request":
        // Acknowledge at once (the router stops dispatching); the engine side finishes its streams.
        this.#log.info({ reason: m.reason, graceMs: m.graceMs }, "the router asked this node to drain");
        void this.drain(m.reason, m.graceMs);
        this.#o.onMessage?.(m);
        return;
      default:
        this.#o.onMessage?.(m);
    }
  }

  /** An ack's router time, with when its request left: the node's conditions compare the clocks. */
  #routerClock(routerTimeMs: number | undefined, sentAtMs: number): void {
    const report = this.#o.onRouterClock;
    if (routerTimeMs === undefined || !report) return;
    guarded(
      this.#log,
      "comparing the router's clock",
      report,
    )({ sentAtMs, receivedAtMs: this.#now(), routerTimeMs });
  }

  #registered(m: RouterMessageOf<"register_ack">): void {
    if (!this.#pendingRegister || m.nodeId !== this.#o.state.nodeId) return;
    this.leaseStats.registrations++;
    const lease: LeaseInfo = {
      nodeId: m.nodeId,
      leaseId: m.leaseId,
      epoch: m.epoch,
      leaseDurationMs: m.leaseDurationMs,
      renewalIntervalMs: renewalIntervalMs(
        this.#o.settings.leaseRenewalIntervalMs,
        m.leaseDurationMs,
        m.renewalIntervalMs,
      ),
    };
    this.#lastAck = this.#now();
    this.#routerClock(m.routerTimeMs, this.#registerSentAt);
    this.#setLease(lease);
    this.#lastEpoch = m.epoch;
    this.#log.info(
      {
        epoch: m.epoch,
        leaseMs: m.leaseDurationMs,
        renewMs: lease.renewalIntervalMs,
        routerVersion: m.routerVersion,
      },
      "registered with the router",
    );
    this.#pendingRegister({ kind: "ok" });
    this.#o.onRegistered?.(lease);
    if (this.#draining) void this.drain("draining", 0);
  }

  /** The router revoked this node on its live connection: end the lease and the loop, retry nothing. */
  #revokedByRouter(message: string): void {
    if (this.#revoked) return;
    this.revokedBecause = message;
    this.#revoked = revokedError(this.#o.state.nodeId, message);
    this.#log.error({ hint: this.#revoked.hint }, this.#revoked.message);
    this.#setLease(null);
    this.#pendingRegister?.({ kind: "fatal", error: this.#revoked });
    this.#wake.abort();
  }

  #registerRefused(m: RouterMessageOf<"register_refused">): void {
    if (!this.#pendingRegister) return;
    if (m.code === "revoked") {
      this.#revokedByRouter(m.message);
      return;
    }
    const hint =
      m.code === "version_mismatch"
        ? m.upgrade === "node"
          ? "Upgrade xim on this node to the router's version."
          : "Upgrade the router (or run an older xim on this node)."
        : m.code === "unknown_node"
          ? "Enroll again with a new join key: 'xim enroll --join-key ... --force'."
          : m.code === "flow_control"
            ? "Turn flow control on: XEROTIER_AGENT_FLOW_CONTROL_ENABLED=true, XEROTIER_AGENT_FLOW_CONTROL_WINDOW_BYTES of 1024 or more."
            : undefined;
    if (m.code === "bad_proof" || m.code === "invalid") {
      this.#pendingRegister({ kind: "retry", reason: m.message });
      return;
    }
    const exitCode =
      m.code === "version_mismatch"
        ? ExitCode.version
        : m.code === "flow_control"
          ? ExitCode.config
          : ExitCode.failure;
    this.#pendingRegister({
      kind: "fatal",
      error: new XimError(
        `XIM_REGISTER_${m.code.toUpperCase()}`,
        `the router refused this node: ${m.message}`,
        { hint, exitCode },
      ),
    });
  }
}

export interface RunNodeOptions {
  config: SessionSettings &
    Pick<
      Config,
      | "configDir"
      | "joinKey"
      | "routerUrl"
      | "allowInsecure"
      | "drainGraceSeconds"
      | "flowControlEnabled"
      | "flowControlWindowBytes"
    >;
  logger: Logger;
  /** Aborted on SIGTERM/SIGINT: drain, release the lease, return. */
  signal: AbortSignal;
  status?: () => NodeStatus;
  onMessage?: (message: RouterMessage, session: NodeSession) => void;
  /** Called once the session exists, before it connects (the engine can keep it to report status). */
  onSession?: (session: NodeSession) => void;
  /**
   * Called after the router was told to drain and before the lease is
   * released: finish in-flight streams here (up to `graceMs`).
   */
  beforeStop?: (session: NodeSession, graceMs: number) => Promise<void>;
  hardware?: Hardware;
  /** The node's conditions now, sent with register, renewals and node_status. */
  conditions?: () => NodeCondition[];
  /** Each registration (the first and every one after a reconnect). */
  onRegistered?: (lease: LeaseInfo, session: NodeSession) => void;
}

/**
 * The control plane alone (no engine, no relay): enroll on first start if a
 * join key is set, then hold the lease until the signal, drain and stop.
 * The inference node (node.ts) is this plus the engine and the relay.
 */
export async function runNode(o: RunNodeOptions): Promise<{ nodeId: string; enrolled: boolean }> {
  const { config, logger } = o;
  const { state, enrolled } = await ensureEnrolled(config, logger);
  const session: NodeSession = new NodeSession({
    state,
    settings: config,
    logger,
    status: o.status,
    conditions: o.conditions,
    hardware: o.hardware,
    windowBytes: config.flowControlEnabled ? config.flowControlWindowBytes : 0,
    onMessage: (m) => o.onMessage?.(m, session),
    onRegistered: (lease) => o.onRegistered?.(lease, session),
  });
  o.onSession?.(session);
  const beforeStop = o.beforeStop;
  await serveUntilStopped(session, o.signal, { configDir: config.configDir, nodeId: state.nodeId, logger });
  await drainNode({
    session,
    nodeId: state.nodeId,
    graceMs: config.drainGraceSeconds * 1000,
    logger,
    finishStreams: beforeStop && ((graceMs) => beforeStop(session, graceMs)),
  });
  return { nodeId: state.nodeId, enrolled };
}
