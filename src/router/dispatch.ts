/**
 * @module The router's half of the relay: one inference request from an
 * HTTP client to a node and back. It reserves a slot (queue.ts), sends
 * `dispatch`, turns the node's `stream_start` into the HTTP status and
 * headers, writes each `chunk`'s bytes to the client as they are (no
 * re-encoding), returns credit as the client takes them (credits.ts),
 * ends on `stream_end`, and turns a `stream_error` (or a lost node) into
 * an SSE error event or an OpenAI JSON error. An engine's refusal (a
 * non-2xx stream_start) is held until its end and sent in OpenAI's shape
 * (openai-errors.ts). A client that goes away sends `cancel` to the node
 * (logged at info); the slot is freed when the node confirms.
 * Streams are keyed by the router's internal request id (request-id.ts),
 * and a node's message reaches a stream only when that node holds it:
 * anything else is dropped and counted, never written to a client.
 */
import { type ServerResponse, validateHeaderValue } from "node:http";
import { bufferView } from "../core/buffer-view.ts";
import { guarded } from "../core/guard.ts";
import type { Logger } from "../core/log.ts";
import type { RouterMetrics } from "../observability/router-metrics.ts";
import type { DISPATCH_PATHS, NodeMessage, NodeMessageOf } from "../protocol/messages.ts";
import type { ControlPlane, Lease } from "./control-plane.ts";
import { RouterCredit } from "./credits.ts";
import { blockedBy, describeConditions } from "./node-availability.ts";
import {
  errorOutcomeOf,
  MAX_ENGINE_ERROR_BYTES,
  openAiErrorBody,
  translateEngineError,
} from "./openai-errors.ts";
import type { Scheduler } from "./queue.ts";
import { retryAfterHeaders } from "./retry-after.ts";
import { type RequestTiming, timingHeaders } from "./server-timing.ts";
import { SseEventTooLargeError, SseJoiner } from "./sse-joiner.ts";
import { checkRouterFlow, DEFAULT_MAX_EVENT_BYTES, streamWindowProblem } from "./stream-limits.ts";

export { openAiErrorBody };

type StreamMessageType = "stream_start" | "chunk" | "stream_end" | "stream_error";

/** The frames-dropped metric's reason label of each refused node message. */
const METRIC_REASON = {
  unknownStream: "unknown_stream",
  foreignStream: "foreign_stream",
  duplicateDispatch: "duplicate_dispatch",
} as const;

export interface FlowSettingsRouter {
  /** The window the router asks each stream for (the node may cap it); 0 = flow control off. */
  windowBytes: number;
  /** Used when a node does not say its own replenish point in stream_start. */
  replenishThreshold: number;
  /** Credit for bytes taken below the threshold is returned after this long without output. */
  creditIdleMs: number;
  /** The longest unfinished SSE event held per stream (stream-limits.ts); DEFAULT_MAX_EVENT_BYTES when absent. */
  maxEventBytes?: number;
}

export const DEFAULT_ROUTER_FLOW: FlowSettingsRouter = {
  windowBytes: 65536,
  replenishThreshold: 0.5,
  creditIdleMs: 100,
};

/** How long after a node's lease ends its streams still wait for their last messages. */
const LOST_NODE_GRACE_MS = 500;

/** How long the node may take to confirm a cancel before the router frees the slot anyway. */
const CANCEL_CONFIRM_MS = 10_000;

/** At most one log line per this long for each kind of refused node message (a node may flood them). */
const REFUSED_LOG_MS = 10_000;

export interface InferenceRequest {
  /** The router's internal id (request-id.ts mintRequestId): the stream's only key. */
  requestId: string;
  /** The client's X-Request-ID when valid: echoed and logged, never used to route. */
  clientRequestId?: string;
  project: string;
  tenant: string;
  model: string;
  path: (typeof DISPATCH_PATHS)[number];
  stream: boolean;
  body: Uint8Array;
  /** The client went away (its socket closed before the answer ended). */
  signal: AbortSignal;
  receivedAt: number;
  /** What the router and the node added, for Server-Timing and the added-time histograms (server-timing.ts). */
  timing?: RequestTiming;
}

/** Node messages the relay delivered to no client, by reason (tests and the frames-dropped metric read them). */
export interface RelayDropped {
  /** For a request id the router has no stream for (ended, or never minted). */
  unknownStream: number;
  /** For a stream dispatched to another node, or to an earlier process of this one. */
  foreignStream: number;
  /** A node refused a dispatch whose id it already runs (a replay, or a router bug). */
  duplicateDispatch: number;
}

function validHeaderValue(value: string): boolean {
  try {
    validateHeaderValue("content-type", value);
    return true;
  } catch {
    return false;
  }
}

export function sendJsonError(
  res: ServerResponse,
  status: number,
  code: string,
  message: string,
  o: { param?: string | null; headers?: Record<string, string> } = {},
): void {
  if (res.headersSent) {
    res.destroy();
    return;
  }
  const body = openAiErrorBody(status, code, message, o.param ?? null);
  res.writeHead(status, {
    ...o.headers,
    "content-type": "application/json",
    "content-length": Buffer.byteLength(body),
  });
  res.end(body);
}

/**
 * Hold a response's writes until the next tick: the status line, headers
 * and the chunks of one frame from the node (a node sends a stream's
 * start, events and end together when it has them) leave in one write
 * instead of one system call each.
 */
function corkForTick(s: RouterStream): void {
  if (s.corked) return;
  s.corked = true;
  s.res.cork();
  process.nextTick(uncork, s);
}

function uncork(s: RouterStream): void {
  s.corked = false;
  s.res.uncork();
}

interface RouterStream {
  req: InferenceRequest;
  res: ServerResponse;
  nodeId: string;
  /** The epoch of the lease the request was dispatched under. */
  epoch: number;
  seq: number;
  sse: boolean;
  /** SSE only: holds the part of an event after the last complete one. */
  joiner: SseJoiner | undefined;
  credit: RouterCredit | undefined;
  firstChunk: boolean;
  /** The engine refused the request (non-2xx start): its body, held to be translated at the end. */
  refusal: { status: number; parts: Buffer[]; bytes: number } | undefined;
  /** Writes to the response are held until the next tick (see corkForTick). */
  corked: boolean;
  cancelled: boolean;
  cancelTimer: NodeJS.Timeout | undefined;
  finish: (outcome: string) => void;
}

/**
 * Whether `lease` may speak for stream `s`: the lease it was dispatched
 * under, or a later one of the same node process (which registered again
 * knowing that epoch: it kept its streams). Messages arrive only from the
 * connection bound to a live lease (control-plane.ts), so this ties every
 * stream message to the node, and the process, the stream was given to.
 */
function holds(lease: Lease, s: RouterStream): boolean {
  return s.nodeId === lease.nodeId && (s.epoch === lease.epoch || (lease.lastEpoch ?? 0) >= s.epoch);
}

export class RouterRelay {
  readonly #cp: ControlPlane;
  readonly #scheduler: Scheduler;
  readonly #flow: FlowSettingsRouter;
  readonly #metrics: RouterMetrics | undefined;
  readonly #log: Logger;
  readonly #streams = new Map<string, RouterStream>();
  readonly #unsubscribe: Array<() => void> = [];
  readonly #deadlineMs: number;
  readonly #timers = new Set<NodeJS.Timeout>();
  /** Streams failed as node_lost while their node was away: cancelled at the node when it registers again. */
  readonly #orphans = new Map<string, Set<string>>();
  readonly dropped: RelayDropped = { unknownStream: 0, foreignStream: 0, duplicateDispatch: 0 };
  readonly #lastRefusedLog = new Map<keyof RelayDropped, number>();

  constructor(o: {
    controlPlane: ControlPlane;
    scheduler: Scheduler;
    flow?: FlowSettingsRouter;
    metrics?: RouterMetrics;
    logger: Logger;
    /** Sent in dispatch: the node cancels a request running longer (0 = none). */
    deadlineMs?: number;
  }) {
    this.#cp = o.controlPlane;
    this.#scheduler = o.scheduler;
    this.#flow = o.flow ?? DEFAULT_ROUTER_FLOW;
    checkRouterFlow(this.#flow);
    this.#metrics = o.metrics;
    this.#log = o.logger.child({ component: "relay" });
    this.#deadlineMs = o.deadlineMs ?? 0;
    this.#unsubscribe.push(
      this.#cp.onNodeMessage((lease, m) => this.#onNodeMessage(lease, m)),
      this.#cp.onLeaseChange((lease) => {
        if (lease.revoked) this.#nodeRevoked(lease.nodeId);
        else if (lease.state === "expired") {
          // A node's last stream messages travel on its streaming socket and may arrive just after
          // the lease release sent on control: give them a moment before failing what is left.
          const timer = setTimeout(
            guarded(this.#log, "failing a lost node's streams", () => {
              this.#timers.delete(timer);
              this.#nodeLost(lease.nodeId);
            }),
            LOST_NODE_GRACE_MS,
          );
          this.#timers.add(timer);
        } else {
          this.#restarted(lease);
          this.#cancelOrphans(lease);
        }
        this.#scheduler.pump();
      }),
      this.#cp.onBlockingChange((lease) => {
        this.#nodeBlocked(lease);
        this.#scheduler.pump();
      }),
    );
  }

  get active(): number {
    return this.#streams.size;
  }

  /**
   * What each stream holds in this process now, by request id: bytes of an
   * unfinished SSE event, and bytes written to the client not yet sent. The
   * router's own account (tests read it; RSS is too noisy to test against).
   */
  buffered(): Map<string, { nodeId: string; heldEventBytes: number; responseBytes: number }> {
    const out = new Map<string, { nodeId: string; heldEventBytes: number; responseBytes: number }>();
    for (const [id, s] of this.#streams)
      out.set(id, {
        nodeId: s.nodeId,
        heldEventBytes: s.joiner?.heldBytes ?? 0,
        responseBytes: s.res.writableLength,
      });
    return out;
  }

  close(): void {
    for (const un of this.#unsubscribe) un();
    for (const t of this.#timers) clearTimeout(t);
    for (const s of [...this.#streams.values()])
      this.#fail(s, 503, "router_stopping", "the router is shutting down");
  }

  /** Serve one request to the end; resolves with its outcome. */
  async serve(req: InferenceRequest, res: ServerResponse): Promise<string> {
    req.timing?.queueStarted();
    const placement = await this.#scheduler.acquire(req.project, req.model, req.signal);
    req.timing?.queueEnded();
    if (req.timing?.queueMs !== undefined) this.#metrics?.queueWait.observe(req.timing.queueMs / 1000);
    if (!placement.ok) {
      if (placement.status === 499) this.#logCancel(req, { queued: true, chunks: 0 });
      else
        sendJsonError(res, placement.status, placement.code, placement.message, {
          headers: {
            ...(placement.retryAfterMs === undefined ? {} : retryAfterHeaders(placement.retryAfterMs)),
            ...timingHeaders(req.timing),
          },
        });
      if (placement.status >= 500)
        this.#log.info(
          {
            requestId: req.requestId,
            clientRequestId: req.clientRequestId,
            project: req.project,
            model: req.model,
            code: placement.code,
          },
          placement.message,
        );
      this.#metrics?.requests.inc({ outcome: placement.outcome });
      return placement.outcome;
    }
    const lease = placement.lease;
    if (this.#streams.has(req.requestId)) {
      // Ids are minted at random per request, so this is a bug; joining the two would hand one
      // client the other's answer, so the newcomer is refused instead.
      this.#scheduler.release(lease.nodeId);
      this.#log.error({ requestId: req.requestId }, "a request id already in flight was reused; refused");
      sendJsonError(res, 500, "internal_error", "the router could not give this request a unique id; retry");
      this.#metrics?.requests.inc({ outcome: "node_error" });
      return "node_error";
    }
    if (req.signal.aborted) {
      // Gone between getting the slot and dispatching: nothing to send.
      this.#scheduler.release(lease.nodeId);
      this.#metrics?.requests.inc({ outcome: "cancelled" });
      return "cancelled";
    }
    const outcome = await new Promise<string>((resolve) => {
      let released = false;
      const s: RouterStream = {
        req,
        res,
        nodeId: lease.nodeId,
        epoch: lease.epoch,
        seq: 0,
        sse: false,
        joiner: undefined,
        credit: undefined,
        firstChunk: true,
        refusal: undefined,
        corked: false,
        cancelled: false,
        cancelTimer: undefined,
        finish: (outcome) => {
          if (released) return;
          released = true;
          clearTimeout(s.cancelTimer);
          s.credit?.close();
          res.off("drain", onDrain);
          this.#streams.delete(req.requestId);
          this.#metrics?.inFlight.set(this.#streams.size);
          this.#metrics?.requests.inc({ outcome });
          this.#scheduler.release(lease.nodeId);
          if (req.timing?.answered) this.#metrics?.added.observe(req.timing.routerMs() / 1000);
          resolve(outcome);
        },
      };
      const onDrain = () => s.credit?.drained();
      res.on("drain", onDrain);
      this.#streams.set(req.requestId, s);
      this.#metrics?.inFlight.set(this.#streams.size);
      const onGone = () => this.#clientGone(s);
      if (req.signal.aborted) onGone();
      else req.signal.addEventListener("abort", onGone, { once: true });
      req.timing?.dispatched();
      void this.#cp
        .send(lease.nodeId, {
          type: "dispatch",
          requestId: req.requestId,
          leaseId: lease.leaseId,
          epoch: lease.epoch,
          project: req.project,
          tenant: req.tenant,
          model: req.model,
          path: req.path,
          stream: req.stream,
          body: req.body as Uint8Array<ArrayBuffer>,
          windowBytes: this.#flow.windowBytes,
          deadlineMs: this.#deadlineMs,
        })
        .then((sent) => {
          if (!sent) this.#fail(s, 503, "node_unavailable", "the selected node could not be reached; retry");
        });
    });
    const fields = {
      requestId: req.requestId,
      clientRequestId: req.clientRequestId,
      nodeId: lease.nodeId,
      project: req.project,
      model: req.model,
      stream: req.stream,
      outcome,
      queuedMs: placement.queuedMs,
      ms: Date.now() - req.receivedAt,
    };
    if (outcome === "node_error") this.#log.warn(fields, "request failed at the node");
    else if (placement.queued) this.#log.info(fields, "queued request done");
    else this.#log.debug(fields, "request done");
    return outcome;
  }

  /** One info line per request its client gave up on, for the operator looking for where it went. */
  #logCancel(req: InferenceRequest, o: { queued: boolean; chunks: number; nodeId?: string }): void {
    this.#log.info(
      {
        requestId: req.requestId,
        clientRequestId: req.clientRequestId,
        project: req.project,
        tenant: req.tenant,
        model: req.model,
        nodeId: o.nodeId,
        queued: o.queued,
        ms: Date.now() - req.receivedAt,
        chunks: o.chunks,
      },
      "request cancelled by its client",
    );
  }

  #clientGone(s: RouterStream): void {
    if (s.res.writableFinished || s.cancelled) return;
    s.cancelled = true;
    this.#logCancel(s.req, { queued: false, chunks: s.seq, nodeId: s.nodeId });
    s.credit?.close();
    void this.#cp.send(s.nodeId, {
      type: "cancel",
      requestId: s.req.requestId,
      reason: "client disconnected",
    });
    // The slot stays taken until the node confirms (its stream_error), so a queued request never finds it busy.
    s.cancelTimer = setTimeout(
      guarded(this.#log, "a cancel's end", () => s.finish("cancelled")),
      CANCEL_CONFIRM_MS,
    );
  }

  /**
   * A new registration from a process that never held the lease a stream
   * was dispatched under (it restarted): that stream is gone. A process
   * that only reconnected knows its last epoch and keeps its streams.
   */
  #restarted(lease: Lease): void {
    for (const s of [...this.#streams.values()])
      if (s.nodeId === lease.nodeId && !holds(lease, s))
        this.#fail(s, 502, "node_lost", "the node serving this request restarted");
  }

  #nodeLost(nodeId: string): void {
    if (this.#cp.lease(nodeId)?.state !== "expired") return; // registered again meanwhile
    for (const s of [...this.#streams.values()])
      if (s.nodeId === nodeId) {
        // A node that was only stopped or cut off still runs this stream: it is cancelled when the
        // node comes back, else it would hold a slot (and the engine) until its credit stall timeout.
        const ids = this.#orphans.get(nodeId) ?? new Set<string>();
        ids.add(s.req.requestId);
        this.#orphans.set(nodeId, ids);
        this.#fail(s, 502, "node_lost", "the node serving this request went away");
      }
  }

  /** The operator revoked the node: its streams end now (it is told to stop, and never comes back). */
  #nodeRevoked(nodeId: string): void {
    for (const s of [...this.#streams.values()])
      if (s.nodeId === nodeId)
        this.#fail(
          s,
          502,
          "node_revoked",
          "the node serving this request was revoked by the router's operator; retry the request",
        );
  }

  /**
   * The node reports a blocking condition: its streams end now with an error
   * naming it (the node is told to cancel them), rather than hang on a node
   * that cannot finish them. Nothing happens when the set only cleared.
   */
  #nodeBlocked(lease: Lease): void {
    const blocking = blockedBy(lease);
    if (blocking.length === 0) return;
    const why = `the node serving this request reported ${describeConditions(blocking)}; retry the request`;
    for (const s of [...this.#streams.values()])
      if (s.nodeId === lease.nodeId && holds(lease, s)) {
        void this.#cp.send(s.nodeId, {
          type: "cancel",
          requestId: s.req.requestId,
          reason: `node blocked by ${blocking.map((c) => c.condition).join(", ")}`.slice(0, 256),
        });
        this.#fail(s, 503, "node_blocked", why);
      }
  }

  #cancelOrphans(lease: Lease): void {
    const ids = this.#orphans.get(lease.nodeId);
    if (!ids || lease.controlRoutingId === null) return;
    this.#orphans.delete(lease.nodeId);
    for (const requestId of ids)
      void this.#cp.send(lease.nodeId, {
        type: "cancel",
        requestId,
        reason: "the router failed this stream while the node was away",
      });
  }

  #onNodeMessage(lease: Lease, m: NodeMessage): void {
    switch (m.type) {
      case "stream_start":
      case "chunk":
      case "stream_end":
      case "stream_error": {
        const s = this.#streams.get(m.requestId);
        if (!s || !holds(lease, s)) {
          this.#stray(lease, m, s ? "foreignStream" : "unknownStream");
          return;
        }
        if (m.type === "stream_start") this.#start(s, m);
        else if (m.type === "chunk") this.#chunk(s, m);
        else if (m.type === "stream_end") this.#end(s);
        else this.#fail(s, m.status, m.code, m.message);
        return;
      }
      case "dispatch_refused":
        // The router dispatches each id once, so the node already runs the stream the router
        // knows by this id: that stream goes on, and the repeated dispatch is reported.
        this.#refused(lease, m, "duplicateDispatch");
        return;
      case "node_status":
      case "drain":
        this.#scheduler.pump();
        return;
    }
  }

  /**
   * A stream message for a stream this lease does not hold: never delivered,
   * counted. For an unknown one (failed while the node was away, or begun
   * under a previous router process) the node is told to stop it instead of
   * letting it run on; a stream of another node is left alone.
   */
  #stray(lease: Lease, m: NodeMessageOf<StreamMessageType>, reason: "unknownStream" | "foreignStream"): void {
    this.#refused(lease, m, reason);
    if (reason === "unknownStream" && (m.type === "chunk" || m.type === "stream_start"))
      void this.#cp.send(lease.nodeId, {
        type: "cancel",
        requestId: m.requestId,
        reason: "the router has no client for this stream",
      });
  }

  /** Count a node message delivered to no client; log the first of each kind (every REFUSED_LOG_MS). */
  #refused(
    lease: Lease,
    m: NodeMessageOf<StreamMessageType | "dispatch_refused">,
    reason: keyof RelayDropped,
  ): void {
    this.dropped[reason]++;
    this.#metrics?.framesDropped.inc({ reason: METRIC_REASON[reason] });
    // An unknown stream is routine (one the router failed while its node was away): counted only.
    if (reason === "unknownStream") return;
    const now = Date.now();
    if (now - (this.#lastRefusedLog.get(reason) ?? Number.NEGATIVE_INFINITY) < REFUSED_LOG_MS) return;
    this.#lastRefusedLog.set(reason, now);
    const fields = {
      nodeId: lease.nodeId,
      type: m.type,
      requestId: m.requestId,
      total: this.dropped[reason],
    };
    if (reason === "foreignStream")
      this.#log.warn(fields, "dropped a stream message from a node that does not hold that stream");
    else
      this.#log.error(
        fields,
        "a node refused a dispatch with the id of a stream it already runs (a replayed or repeated dispatch); that stream goes on",
      );
  }

  #start(s: RouterStream, m: NodeMessageOf<"stream_start">): void {
    if (s.res.headersSent || s.refusal || s.cancelled) return;
    // The node's start must make a final HTTP answer: a 1xx status would leave the client waiting
    // for ever, and a content type Node refuses as a header value would throw below.
    if (m.status < 200 || !validHeaderValue(m.contentType)) {
      void this.#cp.send(s.nodeId, {
        type: "cancel",
        requestId: s.req.requestId,
        reason: "invalid stream_start",
      });
      this.#fail(
        s,
        502,
        "relay_error",
        `the node started the stream with status ${m.status} or an invalid content type`,
      );
      return;
    }
    const windowProblem = streamWindowProblem(m.windowBytes, this.#flow.windowBytes);
    if (windowProblem) {
      this.#broken(s, windowProblem);
      return;
    }
    if (m.status >= 300) {
      // The engine refused: nothing is sent until its whole answer is here to translate (#end).
      s.refusal = { status: m.status, parts: [], bytes: 0 };
      s.req.timing?.nodeStarted(m.addedUs);
      this.#openCredit(s, m);
      return;
    }
    s.sse = m.contentType.startsWith("text/event-stream");
    if (s.sse) s.joiner = new SseJoiner(this.#flow.maxEventBytes ?? DEFAULT_MAX_EVENT_BYTES);
    corkForTick(s);
    s.req.timing?.nodeStarted(m.addedUs);
    const headers: Record<string, string> = { "content-type": m.contentType, ...timingHeaders(s.req.timing) };
    if (s.sse) headers["cache-control"] = "no-cache";
    s.res.writeHead(m.status, headers);
    if (s.sse) s.res.flushHeaders();
    this.#openCredit(s, m);
  }

  /** Return the node credit for this stream as the client takes its bytes (off with a 0 window). */
  #openCredit(s: RouterStream, m: NodeMessageOf<"stream_start">): void {
    const window = m.windowBytes ?? this.#flow.windowBytes;
    if (window > 0) {
      const replenish = Math.min(
        window,
        Math.max(1, m.replenishBytes ?? Math.ceil(window * this.#flow.replenishThreshold)),
      );
      s.credit = new RouterCredit({
        windowBytes: window,
        replenishBytes: replenish,
        idleMs: this.#flow.creditIdleMs,
        grant: (bytes) => {
          this.#metrics?.creditsGranted.inc(bytes);
          void this.#cp.send(s.nodeId, { type: "credit", requestId: s.req.requestId, bytes });
        },
      });
    }
  }

  #chunk(s: RouterStream, m: NodeMessageOf<"chunk">): void {
    if (s.cancelled) return;
    if ((!s.res.headersSent && !s.refusal) || m.seq !== s.seq) {
      this.#log.warn({ requestId: s.req.requestId, seq: m.seq, expected: s.seq }, "chunk out of order");
      void this.#cp.send(s.nodeId, { type: "cancel", requestId: s.req.requestId, reason: "out of order" });
      this.#fail(s, 502, "relay_error", "the node's stream arrived out of order");
      return;
    }
    s.seq++;
    const data = bufferView(m.data);
    if (s.credit && !s.credit.received(data.length)) {
      this.#broken(s, "the node sent more bytes than its credit allowed");
      return;
    }
    if (s.refusal) {
      this.#hold(s.refusal, data);
      s.credit?.wrote(data.byteLength, true);
      return;
    }
    if (s.firstChunk) {
      s.firstChunk = false;
      this.#metrics?.ttft.observe((Date.now() - s.req.receivedAt) / 1000);
    }
    corkForTick(s);
    // The node may split an event at its credit boundary; the client only ever sees whole
    // events, so an error event after a failure is never glued to half of one.
    let out: Buffer;
    try {
      out = s.joiner ? s.joiner.push(data) : data;
    } catch (err) {
      if (!(err instanceof SseEventTooLargeError)) throw err;
      this.#broken(s, err.message);
      return;
    }
    // Bytes held in the tail count as taken: at most one event, of at most maxEventBytes.
    const drained = out.length === 0 ? true : s.res.write(out);
    this.#metrics?.bytesRelayed.inc(out.length);
    this.#metrics?.chunksRelayed.inc();
    s.credit?.wrote(data.length, drained);
  }

  /**
   * The node broke a limit of this stream (stream-limits.ts): the node is
   * told to cancel it, the client gets a relay_error, the stream's credit
   * and held bytes are dropped; the node's other streams go on.
   */
  #broken(s: RouterStream, why: string): void {
    this.#log.warn({ requestId: s.req.requestId, nodeId: s.nodeId }, `stream failed: ${why}`);
    s.joiner = undefined;
    void this.#cp.send(s.nodeId, { type: "cancel", requestId: s.req.requestId, reason: why.slice(0, 256) });
    this.#fail(s, 502, "relay_error", `the node broke the relay protocol: ${why}`);
  }

  /** Keep an engine refusal's bytes, up to MAX_ENGINE_ERROR_BYTES (the message is near the start). */
  #hold(refusal: NonNullable<RouterStream["refusal"]>, data: Uint8Array): void {
    const room = MAX_ENGINE_ERROR_BYTES - refusal.bytes;
    if (room <= 0) return;
    const part = Buffer.from(data.buffer, data.byteOffset, Math.min(room, data.byteLength));
    refusal.parts.push(Buffer.from(part));
    refusal.bytes += part.length;
  }

  #end(s: RouterStream): void {
    if (s.cancelled) {
      s.finish("cancelled");
      return;
    }
    if (s.refusal && !s.res.headersSent) {
      const e = translateEngineError(s.refusal.status, Buffer.concat(s.refusal.parts));
      sendJsonError(s.res, e.status, e.code, e.message, {
        param: e.param,
        headers: this.#errorHeaders(s, e.status),
      });
      s.finish(errorOutcomeOf(e.status));
      return;
    }
    if (!s.res.headersSent) {
      sendJsonError(s.res, 502, "relay_error", "the node ended the stream before it started", {
        headers: this.#errorHeaders(s, 502),
      });
      s.finish("node_error");
      return;
    }
    corkForTick(s);
    s.res.end(s.joiner?.rest());
    s.finish("ok");
  }

  /** An error answer's headers: when to retry a 503, and what the router and the node added. */
  #errorHeaders(s: RouterStream, status: number): Record<string, string> {
    return {
      ...(status === 503 ? retryAfterHeaders(this.#scheduler.retryAfterMs(s.req.project, s.req.model)) : {}),
      ...timingHeaders(s.req.timing),
    };
  }

  #fail(s: RouterStream, status: number, code: string, message: string): void {
    if (s.cancelled) {
      s.finish("cancelled");
      return;
    }
    if (!s.res.headersSent)
      sendJsonError(s.res, status, code, message, { headers: this.#errorHeaders(s, status) });
    else if (s.sse && !s.res.writableEnded) {
      const body = openAiErrorBody(status, code, message);
      s.res.end(`data: ${body}\n\n`);
    } else s.res.destroy();
    // 499: the node stopped the stream for the router (its client went, its lease ended).
    s.finish(status === 499 ? "cancelled" : errorOutcomeOf(status));
  }
}
