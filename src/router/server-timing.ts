/**
 * @module The time xim adds to one request, as the router's answer tells
 * it: the `Server-Timing` header (W3C Server Timing; browsers' devtools,
 * curl -v and most HTTP clients show it) and the added-time histograms.
 *
 *   queue   waiting for a node slot (router/queue.ts)
 *   router  the router's own work: from the request's arrival to the
 *           dispatch handed to ZeroMQ, less the queue wait and the body's
 *           upload (the client's and the network's time), plus the
 *           handling of the node's stream_start up to the response headers
 *           (an answer the router gives itself: arrival to its headers)
 *   node    the node's own work before the engine's first answer and after
 *           it, up to its stream_start (stream_start's `addedUs`)
 *
 * What is not in any of them: the network hops (HTTP, ZeroMQ) and the
 * engine. The header goes out with the response headers, so it holds what
 * is known by then: a streamed answer's later chunks are not in it (their
 * cost is per chunk, read from the CPU metrics). Times are milliseconds
 * with microsecond digits, read from the monotonic clock.
 */
import { performance } from "node:perf_hooks";

export const SERVER_TIMING_HEADER = "server-timing";

export class RequestTiming {
  readonly #now: () => number;
  readonly #receivedAt: number;
  #queueStartedAt: number | undefined;
  #queueMs: number | undefined;
  #uploadStartedAt: number | undefined;
  #uploadMs = 0;
  #routerMs = 0;
  #dispatchedAt: number | undefined;
  #nodeMs: number | undefined;
  #startArrivedAt: number | undefined;
  #answered = false;

  constructor(now: () => number = () => performance.now()) {
    this.#now = now;
    this.#receivedAt = now();
  }

  /** The request body's reading began (its upload is not the router's time). */
  uploadStarted(): void {
    this.#uploadStartedAt = this.#now();
  }

  uploadEnded(): void {
    if (this.#uploadStartedAt !== undefined) this.#uploadMs = this.#now() - this.#uploadStartedAt;
  }

  queueStarted(): void {
    this.#queueStartedAt = this.#now();
  }

  queueEnded(): void {
    if (this.#queueStartedAt !== undefined) this.#queueMs = this.#now() - this.#queueStartedAt;
  }

  /** The dispatch left for the node: the router's first share ends here. */
  dispatched(): void {
    this.#dispatchedAt = this.#now();
    this.#routerMs = this.#dispatchedAt - this.#receivedAt - this.#uploadMs - (this.#queueMs ?? 0);
  }

  /** The node's stream_start arrived, with the node's own time in microseconds (absent from older nodes). */
  nodeStarted(addedUs: number | undefined): void {
    this.#startArrivedAt = this.#now();
    if (addedUs !== undefined) this.#nodeMs = addedUs / 1000;
  }

  /**
   * The response headers are being written: the router's share stops here
   * (what follows is per chunk). Called by header(); later calls keep the
   * first figure.
   */
  #answer(): void {
    if (this.#answered) return;
    this.#routerMs = this.routerMs();
    this.#answered = true;
  }

  /** Whether the headers went out with this timing (the router's share is final). */
  get answered(): boolean {
    return this.#answered;
  }

  get queueMs(): number | undefined {
    return this.#queueMs;
  }

  /** The router's own time so far (before dispatch: all of it since arrival, less the queue). */
  routerMs(): number {
    if (this.#answered) return this.#routerMs;
    const now = this.#now();
    if (this.#dispatchedAt === undefined)
      return now - this.#receivedAt - this.#uploadMs - (this.#queueMs ?? 0);
    return this.#routerMs + (this.#startArrivedAt === undefined ? 0 : now - this.#startArrivedAt);
  }

  get nodeMs(): number | undefined {
    return this.#nodeMs;
  }

  /** The header's value now: `queue;dur=0.012, router;dur=0.210, node;dur=0.085` (parts not measured left out). */
  header(): string {
    this.#answer();
    const parts: string[] = [];
    if (this.#queueMs !== undefined) parts.push(`queue;dur=${ms(this.#queueMs)}`);
    parts.push(`router;dur=${ms(this.routerMs())}`);
    if (this.#nodeMs !== undefined) parts.push(`node;dur=${ms(this.#nodeMs)}`);
    return parts.join(", ");
  }
}

function ms(value: number): string {
  return Math.max(0, value).toFixed(3);
}

/** The headers of an answer: Server-Timing when the request's timing is known. */
export function timingHeaders(timing: RequestTiming | undefined): Record<string, string> {
  return timing ? { [SERVER_TIMING_HEADER]: timing.header() } : {};
}
