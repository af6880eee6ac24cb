/**
 * @module Re-joins the SSE events of a stream that a node split at its
 * credit boundary, so the client only ever receives whole events (an error
 * event after a failure is never glued to half of one). The unfinished
 * part is kept as a list of copies and joined once, when its event ends:
 * every byte is copied a bounded number of times however small the chunks
 * (joining on every push was quadratic), and it may not grow past
 * `maxEventBytes` (a node that never ends an event would hold the router's
 * memory without bound).
 */
import { XimError } from "../core/errors.ts";
import { DEFAULT_MAX_EVENT_BYTES } from "./stream-limits.ts";

const LF = 0x0a;
const EVENT_END = Buffer.from("\n\n");
const NOTHING = Buffer.alloc(0);

/** Thrown by push when the unfinished event passes the limit. */
export class SseEventTooLargeError extends XimError {
  constructor(held: number, limit: number) {
    super(
      "XIM_SSE_EVENT_TOO_LARGE",
      `the node sent ${held} bytes of one SSE event without its end (a blank line); the largest accepted is ${limit} bytes`,
    );
  }
}

export class SseJoiner {
  readonly #maxEventBytes: number;
  #held: Buffer[] = [];
  #heldBytes = 0;

  constructor(maxEventBytes = DEFAULT_MAX_EVENT_BYTES) {
    this.#maxEventBytes = maxEventBytes;
  }

  /** Bytes of the unfinished event held now. */
  get heldBytes(): number {
    return this.#heldBytes;
  }

  /**
   * The bytes of the events completed so far (possibly none); the rest is
   * held. Throws SseEventTooLargeError when the held part passes the limit.
   */
  push(data: Buffer): Buffer {
    let split = data.lastIndexOf(EVENT_END);
    if (split !== -1) split += 2;
    else if (data.length > 0 && data[0] === LF && this.#lastHeldByte() === LF) split = 1; // "\n" | "\n"
    if (split === -1) {
      this.#hold(data);
      return NOTHING;
    }
    const head = data.subarray(0, split);
    const out = this.#held.length > 0 ? Buffer.concat([...this.#held, head]) : head;
    this.#held = [];
    this.#heldBytes = 0;
    if (split < data.length) this.#hold(data.subarray(split));
    return out;
  }

  /** The bytes held back (an unterminated last event), if any. */
  rest(): Buffer | undefined {
    return this.#heldBytes > 0 ? Buffer.concat(this.#held) : undefined;
  }

  #lastHeldByte(): number | undefined {
    const last = this.#held.at(-1);
    return last?.[last.length - 1];
  }

  #hold(part: Buffer): void {
    if (part.length === 0) return;
    this.#heldBytes += part.length;
    if (this.#heldBytes > this.#maxEventBytes) {
      const held = this.#heldBytes;
      this.#held = [];
      this.#heldBytes = 0;
      throw new SseEventTooLargeError(held, this.#maxEventBytes);
    }
    // A copy: a view would keep the node's whole message (up to 16 MiB) alive for a few bytes.
    this.#held.push(Buffer.from(part));
  }
}
