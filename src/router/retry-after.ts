/**
 * @module How long a client refused for capacity (503 queue_full,
 * queue_timeout, no_capacity, node_blocked ...) should wait before it
 * retries: the `Retry-After` and `retry-after-ms` headers of those answers.
 * The OpenAI SDKs retry 503 (and 429) on their own, after 0.5-8 s of
 * backoff unless the answer says how long: openai-node reads
 * `retry-after-ms` first, then `Retry-After` (seconds or an HTTP date);
 * openai-python ignores values over 60 s. Without a hint their retries
 * come too early and all fail while a slot frees a few seconds later.
 *
 * The estimate comes from the measured drain rate of the nodes that serve
 * the model: the router notes each slot freed (one request ended), per
 * node, the last RING of them within WINDOW_MS. A node's rate is the
 * releases in the window over the time since the oldest of them (at least
 * MIN_SPAN_MS, so a release or two just now, say a quick refusal, do not
 * read as a fast drain of a node busy with long streams); the rates
 * of the model's nodes add up. The wait is the requests ahead (already
 * parked on those nodes) plus this one, divided by that rate, clamped to
 * [MIN_MS, MAX_MS]. With nothing measured (no slot freed in the window,
 * no ready node) it is UNKNOWN_MS, the wait one release would give.
 */

/** Releases remembered per node: enough for a stable rate, a fixed cost. */
const RING = 32;
/** Releases older than this say nothing about now. */
const WINDOW_MS = 60_000;
/** The shortest span a rate is measured over: few samples give a cautious (slow) rate. */
const MIN_SPAN_MS = 10_000;

/** The bounds of the advice: a whole second at least; at most half of what openai-python still honours. */
export const RETRY_AFTER_BOUNDS = { MIN_MS: 1000, MAX_MS: 30_000, UNKNOWN_MS: 10_000 } as const;

export class DrainRate {
  readonly #released = new Map<string, number[]>();

  /** A slot of `nodeId` was freed at `now`. */
  note(nodeId: string, now: number): void {
    const times = this.#released.get(nodeId) ?? [];
    times.push(now);
    if (times.length > RING) times.shift();
    this.#released.set(nodeId, times);
  }

  /** Slots freed per millisecond by these nodes together, lately; 0 when none freed in the window. */
  perMs(nodeIds: Iterable<string>, now: number): number {
    let rate = 0;
    for (const id of nodeIds) {
      const recent = (this.#released.get(id) ?? []).filter((t) => now - t <= WINDOW_MS);
      if (recent.length === 0) continue;
      rate += recent.length / Math.max(MIN_SPAN_MS, now - recent[0]);
    }
    return rate;
  }

  /** Milliseconds to advise a client to wait when `ahead` requests wait for these nodes already. */
  retryAfterMs(nodeIds: Iterable<string>, ahead: number, now: number): number {
    const rate = this.perMs(nodeIds, now);
    if (rate === 0) return RETRY_AFTER_BOUNDS.UNKNOWN_MS;
    const wait = Math.ceil((ahead + 1) / rate);
    return Math.min(RETRY_AFTER_BOUNDS.MAX_MS, Math.max(RETRY_AFTER_BOUNDS.MIN_MS, wait));
  }
}

/**
 * The headers of a retry advice: `Retry-After` in whole seconds (rounded
 * up: RFC 9110 allows no fraction) and `retry-after-ms`, the same wait to
 * the millisecond (openai-node reads it first).
 */
export function retryAfterHeaders(ms: number): Record<string, string> {
  const exact = Math.max(RETRY_AFTER_BOUNDS.MIN_MS, Math.ceil(ms));
  return { "retry-after": String(Math.ceil(exact / 1000)), "retry-after-ms": String(exact) };
}
