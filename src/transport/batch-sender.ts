/**
 * @module One writer per ZeroMQ socket that coalesces. Messages queued in
 * one turn of the event loop, and those queued while a send is in flight
 * (zeromq.js allows one at a time per socket), leave together: ONE frame
 * per destination holding the encoded messages back to back (see
 * docs/protocol.md "Frames and limits"). A lone message leaves after the
 * current I/O phase (microseconds); under load the per-send costs (the
 * async send, libzmq's queueing and CURVE box, the peer's receive and
 * wake-up) are paid once per batch, not per chunk. Measured with
 * bench/run.ts: that is where the relay's CPU went.
 */

import { encodeBatch } from "../protocol/codec.ts";

/** What a batch may hold at most, so one send never grows without bound. */
export const MAX_BATCH_MESSAGES = 256;
export const MAX_BATCH_BYTES = 1 << 20;

interface Queued {
  frame: Buffer;
  to: string;
  done: (sent: boolean) => void;
}

export class BatchSender {
  readonly #send: (frame: Buffer, to: string) => Promise<void>;
  readonly #closed: () => boolean;
  readonly #holdMs: number;
  #lastSendAt = Number.NEGATIVE_INFINITY;
  #queue: Queued[] = [];
  #busy = false;
  #scheduled = false;
  /** Sends that failed (peer gone, socket closed): counted by the owner. */
  failures = 0;

  /**
   * @param send sends one frame to a destination (a ROUTER socket's routing
   *   id; "" for a socket with one peer); the caller adds the envelope
   * @param closed whether the socket is closed (queued messages then resolve false)
   * @param holdMs a message queued less than this long after the last send
   *   waits until then (0: never waits). The first message after a pause
   *   leaves at once; a fast run of them leaves at most once per holdMs.
   */
  constructor(send: (frame: Buffer, to: string) => Promise<void>, closed: () => boolean, holdMs = 0) {
    this.#send = send;
    this.#closed = closed;
    this.#holdMs = holdMs;
  }

  /** Queue one encoded message; resolves true once it was handed to libzmq, false if it could not be. */
  push(frame: Buffer, to = ""): Promise<boolean> {
    return new Promise((done) => {
      this.#queue.push({ frame, to, done });
      if (!this.#busy && !this.#scheduled) {
        // Flush after the current I/O phase: chunks that many streams read from the
        // engine in this turn of the event loop leave in one send.
        this.#scheduled = true;
        const flush = () => {
          this.#scheduled = false;
          void this.#flush();
        };
        const wait = this.#lastSendAt + this.#holdMs - performance.now();
        if (wait > 0) setTimeout(flush, wait);
        else setImmediate(flush);
      }
    });
  }

  get queued(): number {
    return this.#queue.length;
  }

  async #flush(): Promise<void> {
    if (this.#busy) return;
    this.#busy = true;
    while (this.#queue.length > 0) {
      // One batch per destination, in the order destinations first appear; a
      // destination's messages keep their order.
      const to = this.#queue[0].to;
      const batch: Queued[] = [];
      const rest: Queued[] = [];
      let bytes = 0;
      // Once one message of this destination stays behind, the later ones stay too (order).
      let full = false;
      for (const q of this.#queue) {
        full ||=
          q.to === to &&
          batch.length > 0 &&
          (batch.length >= MAX_BATCH_MESSAGES || bytes + q.frame.length > MAX_BATCH_BYTES);
        if (q.to === to && !full) {
          batch.push(q);
          bytes += q.frame.length;
        } else rest.push(q);
      }
      this.#queue = rest;
      let sent = false;
      if (!this.#closed()) {
        this.#lastSendAt = performance.now();
        try {
          await this.#send(encodeBatch(batch.map((q) => q.frame)), to);
          sent = true;
        } catch {
          this.failures++;
        }
      }
      for (const q of batch) q.done(sent);
    }
    this.#busy = false;
  }
}
