/**
 * @module The node's side of credit-based flow control (the Xerotier documentation's six
 * XEROTIER_AGENT_FLOW_CONTROL_* settings). Each stream starts with a
 * window of credit (the router's `dispatch.windowBytes`, capped by this
 * node's own window), spends it on every chunk's bytes and waits at zero
 * until the router sends `credit`. Across all streams, unacknowledged
 * bytes at or above the pause threshold stop every stream (a global
 * safety valve). A stream that waits for credit longer than the timeout
 * is stalled: the caller cancels it at the engine and reports it. With
 * flow control off (setting, or a window of 0 from the router) nothing
 * ever waits.
 */
import type { Config } from "../core/config/schema.ts";
import { XimError } from "../core/errors.ts";
import type { NodeMetrics } from "../observability/node-metrics.ts";

export type FlowSettings = Pick<
  Config,
  | "flowControlEnabled"
  | "flowControlWindowBytes"
  | "flowControlReplenishThreshold"
  | "flowControlPauseThresholdBytes"
  | "flowControlTimeoutSeconds"
>;

/** A stream waited for credit longer than FLOW_CONTROL_TIMEOUT_SECONDS. */
export class StalledError extends XimError {
  constructor(waitedMs: number) {
    super("XIM_STREAM_STALLED", `no credit from the router for ${Math.round(waitedMs / 1000)} s`);
  }
}

export class CreditLedger {
  readonly settings: FlowSettings;
  readonly #metrics: NodeMetrics | undefined;
  readonly #now: () => number;
  #unacked = 0;
  #lastCreditAt = 0;
  /** Streams waiting for the global pause to lift, first come first woken. */
  #paused = new Set<() => void>();
  readonly #maxConcurrent: number;

  constructor(
    settings: FlowSettings,
    options: { metrics?: NodeMetrics; now?: () => number; maxConcurrent?: number } = {},
  ) {
    this.settings = settings;
    this.#metrics = options.metrics;
    this.#now = options.now ?? Date.now;
    this.#maxConcurrent = Math.max(1, options.maxConcurrent ?? 1);
  }

  /**
   * Where a stream asks the router for more credit: REPLENISH_THRESHOLD x
   * the credit the stream can count on, which is its window capped at its
   * share of the global pause threshold (PAUSE_THRESHOLD_BYTES / max
   * concurrent requests). The cap keeps every stream the node may run
   * below the pause threshold; otherwise, with many short streams, each
   * would keep its few KiB unacknowledged until it ends and the node would
   * sit in the global pause waiting for credit the router holds back
   * (1024 streams x 8 KiB against 256 KiB). The threshold applies inside
   * the cap, so it still moves the replenish point when the share is the
   * smaller (the default GPU concurrency: 256 or 1024 streams).
   */
  replenishBytes(window: number): number {
    if (window === 0) return 0;
    const share = Math.floor(this.settings.flowControlPauseThresholdBytes / this.#maxConcurrent);
    const credit = Math.min(window, share);
    return Math.max(1, Math.ceil(credit * this.settings.flowControlReplenishThreshold));
  }

  /** Bytes sent and not yet acknowledged by credit, over all streams. */
  get unackedBytes(): number {
    return this.#unacked;
  }

  /** Whether every stream is paused by the global threshold now. */
  get paused(): boolean {
    return this.#unacked >= this.settings.flowControlPauseThresholdBytes;
  }

  get lastCreditAt(): number {
    return this.#lastCreditAt;
  }

  now(): number {
    return this.#now();
  }

  /** The credit state of a new stream; `requestedWindow` 0 means the router turned flow control off. */
  open(requestedWindow: number): StreamCredit {
    const on = this.settings.flowControlEnabled && requestedWindow > 0;
    const window = on ? Math.min(requestedWindow, this.settings.flowControlWindowBytes) : 0;
    return new StreamCredit(this, window);
  }

  /** @internal */ add(bytes: number): void {
    this.#unacked += bytes;
    this.#metrics?.unackedBytes.set(this.#unacked);
  }

  /** @internal */ remove(bytes: number, credited: boolean): void {
    this.#unacked -= bytes;
    if (credited) this.#lastCreditAt = this.#now();
    this.#metrics?.unackedBytes.set(this.#unacked);
    this.#wakeNextPaused();
  }

  /**
   * Below the pause threshold: wake the longest-waiting paused stream. It
   * passes the turn on once it may send (waitUntil), so a lifted pause
   * wakes as many streams as fit instead of all of them on every credit.
   */
  #wakeNextPaused(): void {
    if (this.paused) return;
    const first = this.#paused.values().next();
    if (first.done) return;
    this.#paused.delete(first.value);
    first.value();
  }

  /** @internal */ pause(scope: "stream" | "global"): void {
    this.#metrics?.flowPauses.inc({ scope });
  }

  /** @internal Wait until the global pause lifts (a paused stream's turn), `ms` at most. */
  untilUnpaused(ms: number, signal?: AbortSignal): Promise<void> {
    return wake(this.#paused, ms, signal);
  }

  /**
   * @internal A stream that no longer waits for the pause passes the turn on,
   * after the caller's turn of the event loop (once it has sent what it may).
   */
  passTurn(): void {
    if (this.#paused.size > 0) setImmediate(() => this.#wakeNextPaused());
  }
}

/** Resolves when woken through `wakers`, after `ms`, or rejects when the signal aborts. */
function wake(wakers: Set<() => void>, ms: number, signal?: AbortSignal): Promise<void> {
  return new Promise((resolve, reject) => {
    const done = () => {
      clearTimeout(timer);
      signal?.removeEventListener("abort", onAbort);
      wakers.delete(done);
      resolve();
    };
    const onAbort = () => {
      clearTimeout(timer);
      wakers.delete(done);
      reject(signal?.reason);
    };
    if (signal?.aborted) return onAbort();
    const timer = setTimeout(done, ms);
    wakers.add(done);
    signal?.addEventListener("abort", onAbort, { once: true });
  });
}

export class StreamCredit {
  /** The effective window in bytes; 0 when flow control is off for this stream. */
  readonly window: number;
  /** Bytes the client takes before the router replenishes (CreditLedger.replenishBytes). */
  readonly replenishBytes: number;
  readonly #ledger: CreditLedger;
  /** Waiting for this stream's own credit. */
  readonly #waiting = new Set<() => void>();
  #unacked = 0;
  #peak = 0;
  #lastCreditAt: number;
  #closed = false;

  constructor(ledger: CreditLedger, window: number) {
    this.#ledger = ledger;
    this.window = window;
    this.replenishBytes = ledger.replenishBytes(window);
    this.#lastCreditAt = ledger.now();
  }

  get enabled(): boolean {
    return this.window > 0;
  }

  get unacked(): number {
    return this.#unacked;
  }

  /** The most bytes this stream ever had unacknowledged (never more than the window). */
  get peakUnacked(): number {
    return this.#peak;
  }

  /** Bytes this stream may send now. */
  available(): number {
    if (!this.enabled) return Number.POSITIVE_INFINITY;
    if (this.#ledger.paused) return 0;
    return this.window - this.#unacked;
  }

  sent(bytes: number): void {
    if (!this.enabled || this.#closed) return;
    this.#unacked += bytes;
    if (this.#unacked > this.#peak) this.#peak = this.#unacked;
    this.#ledger.add(bytes);
  }

  credit(bytes: number): void {
    if (!this.enabled || this.#closed) return;
    const take = Math.min(bytes, this.#unacked);
    this.#unacked -= take;
    this.#lastCreditAt = this.#ledger.now();
    this.#ledger.remove(take, true);
    wakeAll(this.#waiting);
  }

  /** Return this stream's unacknowledged bytes to the global budget. */
  close(): void {
    if (this.#closed) return;
    this.#closed = true;
    const held = this.#unacked;
    this.#unacked = 0;
    if (this.enabled) this.#ledger.remove(held, false);
    wakeAll(this.#waiting);
  }

  /**
   * Wait until `ready()` holds, re-checking after every credit. Throws
   * StalledError once no credit has arrived for FLOW_CONTROL_TIMEOUT_SECONDS
   * while waiting (own credit, or any credit while the global pause holds).
   */
  async waitUntil(ready: () => boolean, signal?: AbortSignal): Promise<void> {
    if (ready()) return;
    const ledger = this.#ledger;
    const timeoutMs = ledger.settings.flowControlTimeoutSeconds * 1000;
    const started = ledger.now();
    ledger.pause(ledger.paused ? "global" : "stream");
    while (!ready()) {
      signal?.throwIfAborted();
      const since = Math.max(started, this.#lastCreditAt, ledger.paused ? ledger.lastCreditAt : 0);
      const left = since + timeoutMs - ledger.now();
      if (left <= 0) throw new StalledError(ledger.now() - since);
      // Wait for what blocks: the global pause to lift, or this stream's own credit (then
      // the next paused stream, if any, gets its turn instead).
      if (ledger.paused) await ledger.untilUnpaused(left, signal);
      else {
        ledger.passTurn();
        await wake(this.#waiting, left, signal);
      }
    }
    // This stream goes on: the next paused one may fit too.
    ledger.passTurn();
  }
}

function wakeAll(wakers: Set<() => void>): void {
  if (wakers.size === 0) return;
  const all = [...wakers];
  wakers.clear();
  for (const w of all) w();
}
