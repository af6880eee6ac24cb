/**
 * @module Containment for code the event loop calls on its own: request
 * handlers, socket and stream callbacks, timers, background loops. Node
 * ends the process on an uncaught exception or an unhandled rejection; a
 * server must not die because one request, one frame or one tick went
 * wrong. `guarded` wraps such a callback (sync or async) so that whatever
 * it throws or rejects with is logged once and goes no further; `contain`
 * does the same for a promise already running (`void work()` becomes
 * `contain(log, "...", work())`).
 */
import type { Logger } from "./log.ts";

/** Node's codes for a peer that went away mid-exchange: expected events, not failures. */
const PEER_GONE_CODES = new Set([
  "ECONNRESET",
  "EPIPE",
  "ECONNABORTED",
  "ERR_STREAM_PREMATURE_CLOSE",
  "ERR_STREAM_DESTROYED",
  "ERR_STREAM_WRITE_AFTER_END",
  "ERR_HTTP_REQUEST_TIMEOUT",
]);

/** True for the errors a client causes by closing its connection (an aborted upload, a reset). */
export function isPeerGone(err: unknown): boolean {
  if (!(err instanceof Error)) return false;
  const code = (err as NodeJS.ErrnoException).code;
  return (code !== undefined && PEER_GONE_CODES.has(code)) || err.message === "aborted";
}

/**
 * Log a failure of `what` once: a peer that went away at debug without a
 * stack (it happens all day on a public port), anything else at error with
 * the error (a bug to fix). The logger itself failing is swallowed: this is
 * the last line of defence and must not throw.
 */
export function reportFailure(log: Logger, what: string, err: unknown): void {
  try {
    if (isPeerGone(err))
      log.debug(
        { reason: (err as NodeJS.ErrnoException).code ?? (err as Error).message },
        `${what}: the peer went away`,
      );
    else log.error({ err }, `${what} failed`);
  } catch {
    // Nothing left to tell.
  }
}

/** Route a running promise's rejection to the log instead of the process. */
export function contain(log: Logger, what: string, work: PromiseLike<unknown>): void {
  Promise.resolve(work).catch((err: unknown) => reportFailure(log, what, err));
}

/**
 * `fn` made safe to hand to the event loop (setInterval, `.on("data")`,
 * `server.on("request")`): a throw or a rejection is logged, never raised.
 * `onError` runs after the log (to answer a request, close a stream); if it
 * throws too, that is logged as well.
 */
export function guarded<A extends unknown[]>(
  log: Logger,
  what: string,
  fn: (...args: A) => unknown,
  onError?: (err: unknown, ...args: A) => void,
): (...args: A) => void {
  const fail = (err: unknown, args: A) => {
    reportFailure(log, what, err);
    if (!onError) return;
    try {
      onError(err, ...args);
    } catch (again) {
      reportFailure(log, `${what} (its error handling)`, again);
    }
  };
  return (...args: A) => {
    try {
      const result = fn(...args);
      if (result instanceof Promise) result.catch((err: unknown) => fail(err, args));
    } catch (err) {
      fail(err, args);
    }
  };
}

/**
 * The last line of defence of a long-running command (`xim router serve`,
 * `xim run`): a rejected promise that nobody handled is a bug, logged with
 * its stack, but not a reason to drop every lease and in-flight request of
 * the process. Synchronous uncaught exceptions still end it (the state they
 * leave is unknown). Returns the function that removes the handler.
 */
export function logUnhandledRejections(log: Logger): () => void {
  const onRejection = (reason: unknown) => reportFailure(log, "a promise nobody awaited (a bug)", reason);
  process.on("unhandledRejection", onRejection);
  return () => process.off("unhandledRejection", onRejection);
}
