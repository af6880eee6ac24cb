/**
 * @module The node's inference relay: runs each `dispatch` against the
 * engine and streams the answer back to the router as `stream_start`,
 * `chunk`s and `stream_end` (or `stream_error`). The engine's SSE events
 * are forwarded as the bytes it wrote (`data: <payload>\n\n`, never
 * re-encoded), all the whole events of one socket read in one chunk.
 * Reading from the engine follows the stream's credit (credits.ts): what
 * the node holds for a stream stays within its window plus one read, so a
 * slow client slows the engine instead of growing a buffer. A stream's
 * messages join the session's batch without waiting for each other (a
 * short answer leaves as one frame: start, chunk, end); while the socket
 * is busy, what the engine writes meanwhile is coalesced into the next
 * chunk. The relay also owns the
 * concurrency limit (free slots), the tenant's cache salt, cancellation
 * (router `cancel`, deadline, drain, stall; each logged at info) and
 * drain. A dispatch with the id of a running stream is refused
 * (`dispatch_refused`), never merged. An engine's refusal (non-2xx) is
 * relayed as it is and counted by whose error it is (engine-refusal.ts).
 */
import { performance } from "node:perf_hooks";
import { messageOf } from "../core/errors.ts";
import { guarded } from "../core/guard.ts";
import type { Logger } from "../core/log.ts";
import type { Secret } from "../core/secret.ts";
import { saltedEngineBody } from "../engine/cache-salt.ts";
import { type Engine, EngineHttpError } from "../engine/engine.ts";
import { engineAnswerOutcome } from "../engine/engine-refusal.ts";
import type { SseBlock } from "../engine/sse.ts";
import type { NodeMetrics } from "../observability/node-metrics.ts";
import type {
  Dispatch,
  NodeMessage,
  NodeStatus,
  Outgoing,
  RouterMessage,
  STREAM_ERROR_CODES,
} from "../protocol/messages.ts";
import { CreditLedger, type FlowSettings, StalledError, type StreamCredit } from "./credits.ts";
import { finishReasonIn, usageIn } from "./stream-summary.ts";

export type StreamErrorCode = (typeof STREAM_ERROR_CODES)[number];

/**
 * Free-slot changes reach the router at once, then at most one report per
 * this many ms (the latest count). The router counts its own dispatches to
 * place requests (router/queue.ts); the report is for display and for a
 * router that restarted, so a report per request would only cost CPU.
 */
const SLOTS_REPORT_MS = 100;

/** A stream's messages waiting in the socket's batch at most, before it waits for a send. */
const MAX_UNSENT_MESSAGES = 2;

/** Largest `chunk.data` the relay sends in one message. */
export const MAX_CHUNK_BYTES = 1 << 20;

/** Why a stream was stopped from outside: becomes its `stream_error`. */
class StreamAbort extends Error {
  readonly code: StreamErrorCode;
  readonly status: number;
  constructor(code: StreamErrorCode, status: number, message: string) {
    super(message);
    this.code = code;
    this.status = status;
  }
}

export interface RelayOptions {
  /** The engine, once there is one (vLLM without a model has none yet). */
  engine: () => Engine | undefined;
  /** Sends a stream message to the router (NodeSession.send: the streaming socket when enabled). */
  send: (message: Outgoing<NodeMessage>) => Promise<boolean>;
  flow: FlowSettings;
  maxConcurrent: number;
  saltSecret: Secret;
  logger: Logger;
  metrics?: NodeMetrics;
  /** Called when free slots change (the node reports them to the router at once). */
  onSlotsChange?: () => void;
  now?: () => number;
}

export interface StreamStats {
  requestId: string;
  window: number;
  /** Bytes sent and not yet acknowledged now. */
  unacked: number;
  peakUnacked: number;
  /** The most bytes held for this stream at once: read from the engine and not yet acknowledged. */
  peakHeld: number;
  bytes: number;
  chunks: number;
  messages: number;
  outcome: string;
}

interface Active {
  dispatch: Dispatch;
  abort: AbortController;
  credit: StreamCredit;
  done: Promise<void>;
  out?: StreamOut;
}

export class Relay {
  readonly ledger: CreditLedger;
  /** Stats of the last finished streams (at most 100), for tests and debugging. */
  readonly finished: StreamStats[] = [];
  readonly #o: RelayOptions;
  readonly #log: Logger;
  readonly #now: () => number;
  readonly #active = new Map<string, Active>();
  #draining = false;
  #slotsTimer: NodeJS.Timeout | undefined;
  #slotsDirty = false;

  constructor(o: RelayOptions) {
    this.#o = o;
    this.#log = o.logger.child({ component: "relay" });
    this.#now = o.now ?? Date.now;
    this.ledger = new CreditLedger(o.flow, {
      metrics: o.metrics,
      now: o.now,
      maxConcurrent: o.maxConcurrent,
    });
  }

  get inFlight(): number {
    return this.#active.size;
  }

  /** Stats of the streams running now. */
  live(): StreamStats[] {
    return [...this.#active.values()].flatMap((a) => (a.out ? [a.out.stats("running")] : []));
  }

  get maxConcurrent(): number {
    return this.#o.maxConcurrent;
  }

  get freeSlots(): number {
    return this.#draining ? 0 : Math.max(0, this.#o.maxConcurrent - this.#active.size);
  }

  /** What the node reports to the router (registration, renewals, node_status). */
  status(): NodeStatus {
    const engine = this.#o.engine();
    const state = engine?.state;
    return {
      engine: !engine ? "none" : state === "ready" ? "ready" : state === "loading" ? "loading" : "failed",
      models: engine ? [engine.servedModelName] : [],
      maxConcurrent: this.#o.maxConcurrent,
      freeSlots: this.freeSlots,
    };
  }

  /** dispatch, cancel and credit from the router (other messages are ignored). */
  handle(m: RouterMessage): void {
    switch (m.type) {
      case "dispatch":
        this.#dispatch(m);
        return;
      case "cancel":
        this.#active
          .get(m.requestId)
          ?.abort.abort(new StreamAbort("cancelled", 499, `cancelled by the router: ${m.reason}`));
        return;
      case "credit":
        this.#active.get(m.requestId)?.credit.credit(m.bytes);
        return;
      case "drain_request":
        this.#draining = true;
        this.#slotsChanged(true);
        return;
      case "lease_refused":
        // The router restarted: its clients are gone, and a stream waiting for their credit would
        // hold its slot until the stall timeout.
        if (m.code === "unknown_lease" && this.#active.size > 0) {
          this.#log.warn(
            { inFlight: this.#active.size },
            "the router restarted: ending the streams it no longer knows",
          );
          this.cancelAll(new StreamAbort("cancelled", 499, "the router restarted"));
        }
        return;
    }
  }

  /**
   * Stop taking requests, let in-flight streams finish for up to `graceMs`,
   * then cancel what is left. `now` (a second SIGTERM) cancels at once.
   * Resolves once every stream's last message was handed to the session's
   * socket (each `done` awaits its send): the socket's linger, not a pause
   * here, carries them out before the close (src/transport/sockets.ts).
   */
  async drain(graceMs: number, now?: AbortSignal): Promise<void> {
    this.#draining = true;
    this.#slotsChanged(true);
    if (this.#active.size === 0) return;
    this.#log.info({ inFlight: this.#active.size, graceMs }, "draining: waiting for in-flight streams");
    await this.settle(graceMs, now);
    if (this.#active.size > 0) {
      this.#log.warn({ inFlight: this.#active.size }, "drain: cancelling the streams still running");
      this.cancelAll(
        now?.aborted
          ? new StreamAbort(
              "draining",
              503,
              "the node was told to stop at once (a second signal): stream cancelled",
            )
          : new StreamAbort("draining", 503, "the node is shutting down"),
      );
      await Promise.allSettled([...this.#active.values()].map((a) => a.done));
    }
  }

  /** Resolves when the streams running now have ended, `graceMs` passed, or `now` is aborted. */
  async settle(graceMs: number, now?: AbortSignal): Promise<void> {
    if (this.#active.size === 0) return;
    const all = Promise.allSettled([...this.#active.values()].map((a) => a.done));
    let timer: NodeJS.Timeout | undefined;
    let onAbort = () => {};
    const expired = new Promise<void>((resolve) => {
      timer = setTimeout(resolve, graceMs);
      onAbort = () => resolve();
      if (now?.aborted) resolve();
      else now?.addEventListener("abort", onAbort, { once: true });
    });
    await Promise.race([all, expired]);
    clearTimeout(timer);
    now?.removeEventListener("abort", onAbort);
  }

  /**
   * A new lease began: the streams dispatched under an earlier one have no
   * client at the router any more (it failed them when that lease ended, or
   * it restarted and never knew them). End them now: one waiting for
   * credit would otherwise hold its slot until the stall timeout.
   */
  leaseBegan(leaseId: string): void {
    const stale = [...this.#active.values()].filter((a) => a.dispatch.leaseId !== leaseId);
    if (stale.length === 0) return;
    this.#log.warn({ streams: stale.length }, "a new lease began: ending the streams of the previous one");
    for (const a of stale)
      a.abort.abort(new StreamAbort("cancelled", 499, "the lease this stream ran under has ended"));
  }

  /**
   * The lease was lost (the router stayed silent for a whole lease): the
   * router expired it and failed its streams as node_lost, or it is gone.
   * End them now, as the node notices: one waiting for credit would
   * otherwise hold its slot until the stall timeout and be counted a stall.
   */
  leaseLost(why: string): void {
    if (this.#active.size === 0) return;
    this.#log.warn({ streams: this.#active.size, why }, "the lease was lost: ending the streams it ran");
    this.cancelAll(new StreamAbort("cancelled", 499, `the lease this stream ran under was lost (${why})`));
  }

  cancelAll(reason?: Error): void {
    for (const a of this.#active.values())
      a.abort.abort(reason ?? new StreamAbort("draining", 503, "the node is shutting down"));
  }

  /**
   * A dispatch whose id a running stream has (a replayed dispatch, or a
   * router bug): refused in a message of its own, so that neither the
   * running stream nor its record at the router is touched (a stream_error
   * with this id would end that stream).
   */
  #refuseDuplicate(d: Dispatch): void {
    this.#o.metrics?.requests.inc({ outcome: "rejected" });
    this.#log.warn(
      { requestId: d.requestId },
      "refused a dispatch with the id of a stream already running; that stream goes on",
    );
    void this.#o.send({
      type: "dispatch_refused",
      requestId: d.requestId,
      code: "duplicate_request",
      message: `a stream with request id ${d.requestId} already runs on this node; the new dispatch was refused`,
    });
  }

  #reject(d: Dispatch, code: StreamErrorCode, status: number, message: string): void {
    this.#o.metrics?.requests.inc({ outcome: "rejected" });
    void this.#o.send({ type: "stream_error", requestId: d.requestId, seq: 0, code, message, status });
  }

  #dispatch(d: Dispatch): void {
    if (this.#active.has(d.requestId)) {
      this.#refuseDuplicate(d);
      return;
    }
    if (this.#draining) {
      this.#reject(d, "draining", 503, "the node is draining");
      return;
    }
    if (this.#active.size >= this.#o.maxConcurrent) {
      this.#reject(
        d,
        "overloaded",
        503,
        `the node is at its limit of ${this.#o.maxConcurrent} concurrent requests`,
      );
      return;
    }
    const engine = this.#o.engine();
    if (engine?.state !== "ready") {
      this.#reject(d, "engine_error", 503, `the engine is ${engine?.state ?? "not started"}`);
      return;
    }
    const abort = new AbortController();
    const credit = this.ledger.open(d.windowBytes);
    const active: Active = { dispatch: d, abort, credit, done: Promise.resolve() };
    this.#active.set(d.requestId, active);
    this.#o.metrics?.inFlight.set(this.#active.size);
    this.#slotsChanged();
    active.done = this.#run(engine, active).finally(() => {
      credit.close();
      this.#active.delete(d.requestId);
      this.#o.metrics?.inFlight.set(this.#active.size);
      this.#slotsChanged();
    });
  }

  /** Report free slots: at once when `now` (drain) or when none was sent lately, else once the pause ends. */
  #slotsChanged(now = false): void {
    if (this.#slotsTimer && !now) {
      this.#slotsDirty = true;
      return;
    }
    clearTimeout(this.#slotsTimer);
    this.#slotsDirty = false;
    this.#o.onSlotsChange?.();
    this.#slotsTimer = setTimeout(
      guarded(this.#log, "reporting free slots", () => {
        this.#slotsTimer = undefined;
        if (this.#slotsDirty) this.#slotsChanged();
      }),
      SLOTS_REPORT_MS,
    );
    this.#slotsTimer.unref();
  }

  async #run(engine: Engine, a: Active): Promise<void> {
    const d = a.dispatch;
    const started = this.#now();
    const out = new StreamOut(this.#o, a, started);
    a.out = out;
    let timer: NodeJS.Timeout | undefined;
    if (d.deadlineMs > 0)
      timer = setTimeout(
        guarded(this.#log, "a stream's deadline", () =>
          a.abort.abort(new StreamAbort("cancelled", 504, `deadline of ${d.deadlineMs} ms passed`)),
        ),
        d.deadlineMs,
      );
    let outcome = "ok";
    try {
      let body: Buffer[];
      try {
        body = saltedEngineBody(d.body, d, this.#o.saltSecret);
      } catch (err) {
        outcome = "client_error";
        await out.error("bad_request", 400, `invalid request body: ${messageOf(err)}`);
        return;
      }
      const request = { path: d.path, body, requestId: d.requestId };
      const status = d.stream
        ? await this.#streamed(engine, request, a, out)
        : await this.#complete(engine, request, a, out);
      outcome = engineAnswerOutcome(status);
    } catch (err) {
      const reason = a.abort.signal.aborted ? a.abort.signal.reason : err;
      if (reason instanceof StalledError || err instanceof StalledError) {
        outcome = "stalled";
        this.#o.metrics?.flowStalls.inc();
        a.abort.abort(reason);
        this.#log.warn({ requestId: d.requestId, window: a.credit.window }, "stream stalled: cancelled");
        await out.error("stalled", 504, messageOf(reason));
      } else if (reason instanceof StreamAbort) {
        outcome = "cancelled";
        const { chunks } = out.stats(outcome);
        this.#log.info(
          {
            requestId: d.requestId,
            tenant: d.tenant,
            model: d.model,
            reason: reason.message,
            ms: this.#now() - started,
            chunks,
          },
          "stream cancelled",
        );
        await out.error(reason.code, reason.status, reason.message);
      } else {
        outcome = "engine_error";
        this.#log.warn({ requestId: d.requestId, err }, "the engine failed a request");
        await out.error("engine_error", 502, `the engine failed the request: ${messageOf(err)}`);
      }
    } finally {
      clearTimeout(timer);
      this.#o.metrics?.requests.inc({ outcome });
      this.finished.push(out.stats(outcome));
      if (this.finished.length > 100) this.finished.shift();
    }
  }

  async #streamed(
    engine: Engine,
    request: Parameters<Engine["stream"]>[0],
    a: Active,
    out: StreamOut,
  ): Promise<number> {
    const signal = a.abort.signal;
    const blocks = engine.stream(request, signal);
    let first: IteratorResult<SseBlock>;
    out.engineCalled();
    try {
      first = await blocks.next();
      out.engineAnswered();
    } catch (err) {
      out.engineAnswered();
      if (err instanceof EngineHttpError && !signal.aborted) {
        // The engine refused the request: the client gets the engine's own answer.
        out.start(err.status, "application/json");
        out.push(err.body);
        await out.finish();
        return err.status;
      }
      throw err;
    }
    try {
      // stream_start and the first events leave in one frame: no round of the event loop between.
      out.start(200, "text/event-stream; charset=utf-8");
      // Read on only while what this stream holds leaves room in its credit
      // (checked here first: an await per block is measurable on the hot path).
      const room = () => a.credit.available() - out.pendingBytes > 0;
      for (let next = first; !next.done; ) {
        const block = next.value;
        out.noteEvents(block.bytes);
        out.push(block.bytes);
        if (block.done) break;
        if (!room()) await a.credit.waitUntil(room, signal);
        next = await blocks.next();
      }
      await out.finish();
      return 200;
    } finally {
      // A stream left early (stall, cancel) closes the engine's HTTP request.
      void blocks.return(undefined).catch(() => undefined);
    }
  }

  async #complete(
    engine: Engine,
    request: Parameters<Engine["complete"]>[0],
    a: Active,
    out: StreamOut,
  ): Promise<number> {
    let status: number;
    let contentType: string;
    let body: Buffer;
    out.engineCalled();
    try {
      const reply = await engine.complete(request, a.abort.signal);
      out.engineAnswered();
      status = reply.status;
      contentType = reply.contentType ?? "application/json";
      body = reply.body;
    } catch (err) {
      if (!(err instanceof EngineHttpError) || a.abort.signal.aborted) throw err;
      out.engineAnswered();
      status = err.status;
      contentType = "application/json";
      body = err.body;
    }
    out.start(status, contentType);
    out.noteEvents(body);
    out.push(body);
    await out.finish();
    return status;
  }
}

/** One stream's way out to the router: ordering, coalescing, credit, the terminal message. */
class StreamOut {
  readonly #o: RelayOptions;
  readonly #now: () => number;
  readonly #a: Active;
  readonly #started: number;
  #pending: Buffer[] = [];
  #pendingBytes = 0;
  #seq = 0;
  #busy = false;
  /** Messages of this stream queued and not yet handed to libzmq; the last one's promise. */
  #unsent = 0;
  #lastSend: Promise<void> = Promise.resolve();
  #failure: unknown;
  #idle: Array<() => void> = [];
  #ended = false;
  #bytes = 0;
  #chunks = 0;
  #messages = 0;
  #lastChunkAt = 0;
  #peakHeld = 0;
  #usage: { promptTokens: number; completionTokens: number } | undefined;
  #finishReason: string | undefined;
  /** The node's own time before stream_start (stream_start's addedUs): ms so far, and when the running part began. */
  #addedMs = 0;
  #addedSince: number | undefined = performance.now();

  constructor(o: RelayOptions, a: Active, started: number) {
    this.#o = o;
    this.#now = o.now ?? Date.now;
    this.#a = a;
    this.#started = started;
  }

  get pendingBytes(): number {
    return this.#pendingBytes;
  }

  stats(outcome: string): StreamStats {
    return {
      requestId: this.#a.dispatch.requestId,
      window: this.#a.credit.window,
      unacked: this.#a.credit.unacked,
      peakUnacked: this.#a.credit.peakUnacked,
      peakHeld: this.#peakHeld,
      bytes: this.#bytes,
      chunks: this.#chunks,
      messages: this.#messages,
      outcome,
    };
  }

  /** Usage and finish reason from the engine's own bytes (the last ones seen win). */
  noteEvents(bytes: Buffer): void {
    this.#finishReason = finishReasonIn(bytes) ?? this.#finishReason;
    this.#usage = usageIn(bytes) ?? this.#usage;
  }

  /** The request went to the engine: the node's own time stops until its answer. */
  engineCalled(): void {
    this.#stopAddedClock();
  }

  #stopAddedClock(): void {
    if (this.#addedSince === undefined) return;
    this.#addedMs += performance.now() - this.#addedSince;
    this.#addedSince = undefined;
  }

  /** The engine's first answer (or refusal) is here: the node's own time runs again. */
  engineAnswered(): void {
    this.#addedSince ??= performance.now();
  }

  /** Queue the stream's status and content type: the first message of the stream. */
  start(status: number, contentType: string): void {
    this.#stopAddedClock();
    this.#o.metrics?.added.observe(this.#addedMs / 1000);
    void this.#send({
      type: "stream_start",
      requestId: this.#a.dispatch.requestId,
      status,
      contentType,
      windowBytes: this.#a.credit.window,
      replenishBytes: this.#a.credit.replenishBytes,
      addedUs: Math.round(this.#addedMs * 1000),
    });
  }

  /** Queue bytes for the router; they leave at once when no send is in progress. */
  push(data: Buffer): void {
    if (data.length === 0) return;
    this.#pending.push(data);
    this.#pendingBytes += data.length;
    this.#noteHeld();
    if (this.#failure !== undefined) return;
    this.#kick();
  }

  #noteHeld(): void {
    const held = this.#pendingBytes + this.#a.credit.unacked;
    if (held > this.#peakHeld) this.#peakHeld = held;
  }

  #kick(): void {
    if (this.#busy) return;
    this.#busy = true;
    void this.#drain();
  }

  async #drain(): Promise<void> {
    const credit = this.#a.credit;
    try {
      while (this.#pendingBytes > 0) {
        if (credit.available() <= 0)
          await credit.waitUntil(() => credit.available() > 0, this.#a.abort.signal);
        const n = Math.min(this.#pendingBytes, credit.available(), MAX_CHUNK_BYTES);
        const data = this.#take(n);
        credit.sent(n);
        this.#noteHeld();
        const now = this.#now();
        const metrics = this.#o.metrics;
        if (metrics) {
          if (this.#chunks === 0) metrics.ttft.observe((now - this.#started) / 1000);
          else metrics.interChunk.observe((now - this.#lastChunkAt) / 1000);
          metrics.bytesRelayed.inc(n);
          metrics.chunksRelayed.inc();
        }
        this.#lastChunkAt = now;
        this.#bytes += n;
        this.#chunks++;
        // Not awaited: the stream's next messages (often its stream_end) join the same frame.
        void this.#send({
          type: "chunk",
          requestId: this.#a.dispatch.requestId,
          seq: this.#seq++,
          data: data as Uint8Array<ArrayBuffer>,
        });
        // While the socket is busy, what the engine writes next waits here and leaves as one chunk.
        if (this.#unsent >= MAX_UNSENT_MESSAGES) await this.#lastSend;
      }
    } catch (err) {
      this.#failure = err;
      if (!this.#a.abort.signal.aborted) this.#a.abort.abort(err);
    } finally {
      this.#busy = false;
      const idle = this.#idle;
      this.#idle = [];
      for (const resolve of idle) resolve();
    }
  }

  #take(n: number): Buffer {
    if (this.#pending[0].length === n) {
      this.#pendingBytes -= n;
      return this.#pending.shift() as Buffer;
    }
    const parts: Buffer[] = [];
    let left = n;
    while (left > 0) {
      const head = this.#pending[0];
      if (head.length <= left) {
        parts.push(head);
        this.#pending.shift();
        left -= head.length;
      } else {
        parts.push(head.subarray(0, left));
        this.#pending[0] = head.subarray(left);
        left = 0;
      }
    }
    this.#pendingBytes -= n;
    return parts.length === 1 ? parts[0] : Buffer.concat(parts, n);
  }

  /** Wait until every queued byte was sent, then end the stream. */
  async finish(): Promise<void> {
    while (this.#busy || (this.#pendingBytes > 0 && this.#failure === undefined)) {
      if (!this.#busy) this.#kick();
      await new Promise<void>((resolve) => this.#idle.push(resolve));
    }
    if (this.#failure !== undefined) throw this.#failure;
    this.#ended = true;
    await this.#send({
      type: "stream_end",
      requestId: this.#a.dispatch.requestId,
      seq: this.#seq,
      ...(this.#usage ? { usage: this.#usage } : {}),
      ...(this.#finishReason ? { finishReason: this.#finishReason } : {}),
    });
  }

  /** The terminal error of a stream (once; nothing after a stream_end). */
  async error(code: StreamErrorCode, status: number, message: string): Promise<void> {
    if (this.#ended) return;
    this.#ended = true;
    // Let a send in progress finish so the error follows the last chunk in order.
    while (this.#busy) await new Promise<void>((resolve) => this.#idle.push(resolve));
    this.#pending = [];
    this.#pendingBytes = 0;
    await this.#send({
      type: "stream_error",
      requestId: this.#a.dispatch.requestId,
      seq: this.#seq,
      code,
      message: message.slice(0, 4000),
      status,
    });
  }

  /** Queue a message on the session's batch (messages of a stream stay in order); resolves once sent. */
  #send(m: Outgoing<NodeMessage>): Promise<void> {
    this.#messages++;
    this.#unsent++;
    const sent = this.#o.send(m).then(() => {
      this.#unsent--;
    });
    this.#lastSend = sent;
    return sent;
  }
}
