/**
 * @module One writer per ZeroMQ socket that coalesces. Messages queued in
 * one turn of the event loop, and those queued while a send is in flight
 * (zeromq.js allows one at a time), leave together as ONE frame holding the
 * encoded messages back to back (see docs/protocol.md "Frames and limits").
 * A lone message leaves after the current I/O phase (microseconds); under
 * load the per-send costs (the async send, libzmq's queueing and CURVE box,
 * the peer's receive and wake-up) are paid once per batch, not per chunk.
 * Measured with bench/run.ts: that is where the relay's CPU went.
 */

import { encodeBatch } from "../protocol/codec.ts";

/** What a batch may hold at most, so one send never grows without bound. */
export const MAX_BATCH_MESSAGES = 256;
export const MAX_BATCH_BYTES = 1 << 20;

interface Queued {
  frame: Buffer;
  done: (sent: boolean) => void;
}

export class BatchSender {
  readonly #send: (frame: Buffer) => Promise<void>;
  readonly #closed: () => boolean;
  #queue: Queued[] = [];
  #busy = false;
  #scheduled = false;
  /** Sends that failed (peer gone, socket closed): counted by the owner. */
  failures = 0;

  /**
   * @param send sends one frame (the caller adds any envelope, e.g. a routing id)
   * @param closed whether the socket is closed (queued messages then resolve false)
   */
  constructor(send: (frame: Buffer) => Promise<void>, closed: () => boolean) {
    this.#send = send;
    this.#closed = closed;
  }

  /** Queue one encoded message; resolves true once it was handed to libzmq, false if it could not be. */
  push(frame: Buffer): Promise<boolean> {
    return new Promise((done) => {
      this.#queue.push({ frame, done });
      if (!this.#busy && !this.#scheduled) {
        // Flush after the current I/O phase: chunks that many streams read from the
        // engine in this turn of the event loop leave in one send.
        this.#scheduled = true;
        setImmediate(() => {
          this.#scheduled = false;
          void this.#flush();
        });
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
      let n = 0;
      let bytes = 0;
      while (
        n < this.#queue.length &&
        n < MAX_BATCH_MESSAGES &&
        (n === 0 || bytes + this.#queue[n].frame.length <= MAX_BATCH_BYTES)
      ) {
        bytes += this.#queue[n].frame.length;
        n++;
      }
      const batch = this.#queue.splice(0, n);
      let sent = false;
      if (!this.#closed()) {
        try {
          await this.#send(encodeBatch(batch.map((q) => q.frame)));
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
