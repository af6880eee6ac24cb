/**
 * @module One writer per ZeroMQ socket that coalesces. zeromq.js allows one
 * send in flight per socket; while one is in flight, further messages
 * queue, and when it completes everything queued leaves as ONE multipart
 * ZeroMQ message (each frame one protocol message, in order; see
 * docs/protocol.md "Frames and limits"). A lone message therefore leaves at
 * once, with no added latency, and under load the per-send costs (the
 * async send, libzmq's queueing, the peer's receive) are paid once per
 * batch instead of once per chunk.
 */

/** What a batch may hold at most, so one send never grows without bound. */
export const MAX_BATCH_FRAMES = 256;
export const MAX_BATCH_BYTES = 1 << 20;

interface Queued {
  frame: Buffer;
  done: (sent: boolean) => void;
}

export class BatchSender {
  readonly #send: (frames: Buffer[]) => Promise<void>;
  readonly #closed: () => boolean;
  #queue: Queued[] = [];
  #busy = false;
  /** Sends that failed (peer gone, socket closed): counted by the owner. */
  failures = 0;

  /**
   * @param send sends one multipart message (the caller adds any envelope, e.g. a routing id)
   * @param closed whether the socket is closed (queued messages then resolve false)
   */
  constructor(send: (frames: Buffer[]) => Promise<void>, closed: () => boolean) {
    this.#send = send;
    this.#closed = closed;
  }

  /** Queue one encoded message; resolves true once it was handed to libzmq, false if it could not be. */
  push(frame: Buffer): Promise<boolean> {
    return new Promise((done) => {
      this.#queue.push({ frame, done });
      if (!this.#busy) void this.#flush();
    });
  }

  get queued(): number {
    return this.#queue.length;
  }

  async #flush(): Promise<void> {
    this.#busy = true;
    while (this.#queue.length > 0) {
      let n = 0;
      let bytes = 0;
      while (
        n < this.#queue.length &&
        n < MAX_BATCH_FRAMES &&
        (n === 0 || bytes + this.#queue[n].frame.length <= MAX_BATCH_BYTES)
      ) {
        bytes += this.#queue[n].frame.length;
        n++;
      }
      const batch = this.#queue.splice(0, n);
      let sent = false;
      if (!this.#closed()) {
        try {
          await this.#send(batch.map((q) => q.frame));
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
