/**
 * @module The router's side of credit-based flow control, one per stream.
 * Bytes count as taken by the client once they are written to its
 * socket and drained (res.write returned true, or 'drain' fired), so a
 * slow reader stops the credit and, at the window, the node. Credit is
 * returned in one message once `replenishBytes` were taken (the node's
 * window x REPLENISH_THRESHOLD, announced in stream_start); bytes taken
 * below that threshold are returned after `idleMs` without further
 * output, so a stream that holds little never waits on the global pause
 * threshold of its node. It also keeps the node to its window: bytes
 * received beyond the window plus every credit granted are an overrun
 * (`received` says so), which the relay treats as a broken stream.
 */

export interface CreditOptions {
  /** The stream's window; 0 = flow control off (no credit is ever sent). */
  windowBytes: number;
  replenishBytes: number;
  idleMs: number;
  /** Sends a `credit` of `bytes` to the node. */
  grant: (bytes: number) => void;
  /** The clock the idle time is measured with (tests inject one); default Date.now. */
  now?: () => number;
}

export class RouterCredit {
  readonly #o: CreditOptions;
  readonly #now: () => number;
  #taken = 0;
  #writing = 0;
  #timer: NodeJS.Timeout | undefined;
  #lastTakeAt = 0;
  #closed = false;
  /** Bytes the node may still send: the window, plus credit granted, minus bytes received. */
  #allowance: number;

  constructor(o: CreditOptions) {
    this.#o = o;
    this.#now = o.now ?? Date.now;
    this.#allowance = o.windowBytes;
  }

  /**
   * Bytes arrived from the node; false when they exceed what it was allowed
   * to send (a credit is granted before the node can spend it, so an honest
   * node never overruns, whatever the timing).
   */
  received(bytes: number): boolean {
    if (this.#o.windowBytes === 0) return true;
    this.#allowance -= bytes;
    return this.#allowance >= 0;
  }

  /** Bytes handed to the client's socket: `drained` is what res.write returned. */
  wrote(bytes: number, drained: boolean): void {
    if (drained) this.#take(bytes);
    else this.#writing += bytes;
  }

  /** The client's socket drained: everything written so far was taken. */
  drained(): void {
    const n = this.#writing;
    this.#writing = 0;
    if (n > 0) this.#take(n);
  }

  close(): void {
    this.#closed = true;
    clearTimeout(this.#timer);
  }

  #take(bytes: number): void {
    if (this.#closed || this.#o.windowBytes === 0) return;
    this.#taken += bytes;
    this.#lastTakeAt = this.#now();
    if (this.#taken >= this.#o.replenishBytes) this.#flush();
    else if (this.#writing === 0 && !this.#timer) this.#armIdle(this.#o.idleMs);
  }

  /**
   * One timer per idle period, not one per chunk: when it fires early (more
   * bytes were taken since), it waits out the rest of the idle time.
   */
  #armIdle(ms: number): void {
    this.#timer = setTimeout(() => {
      this.#timer = undefined;
      const idleFor = this.#now() - this.#lastTakeAt;
      if (idleFor >= this.#o.idleMs) this.#flush();
      else if (this.#taken > 0 && this.#writing === 0) this.#armIdle(this.#o.idleMs - idleFor);
    }, ms);
  }

  #flush(): void {
    clearTimeout(this.#timer);
    this.#timer = undefined;
    if (this.#closed || this.#taken === 0) return;
    const n = this.#taken;
    this.#taken = 0;
    this.#allowance += n;
    this.#o.grant(n);
  }
}
