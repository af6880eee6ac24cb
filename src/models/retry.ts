/**
 * @module The retry loop of a model pull. With the defaults (base 1000 ms,
 * cap 15000 ms, 5 attempts) the waits are about 1 s, 2 s, 4 s, 8 s and 15 s:
 * `XEROTIER_AGENT_MODEL_PULL_MAX_ATTEMPTS` counts retries after the first
 * try, as the Xerotier documentation's retry sequence shows. Each wait is the
 * exponential ceiling less up to 10 % jitter (never above the cap), so a
 * fleet does not retry in lockstep yet the sequence stays the documented
 * one. A `Retry-After` from the far end (429, 503) replaces the computed
 * wait. An attempt that moved bytes resets the count: a 60 GB transfer cut
 * ten times, each time further along, is progress, not failure.
 * Errors that are not retryable (a 4xx other than 408/429, a bad
 * manifest, a full disk) end the loop at once with their own reason.
 */

import { backoffCeiling, sleep as realSleep, type Sleep } from "../core/backoff.ts";
import type { Config } from "../core/config/schema.ts";
import { messageOf } from "../core/errors.ts";
import { PullError } from "./source.ts";

export interface RetryPolicy {
  /** Retries after the first try. */
  maxAttempts: number;
  baseDelayMs: number;
  maxDelayMs: number;
}

/** The longest Retry-After honoured; a far end asking for more is asked again after this. */
export const RETRY_AFTER_CAP_MS = 10 * 60_000;

/** Share of each wait taken off at random. */
export const JITTER_FRACTION = 0.1;

export function retryPolicy(
  config: Pick<Config, "modelPullMaxAttempts" | "modelPullBaseDelayMs" | "modelPullMaxDelayMs">,
): RetryPolicy {
  return {
    maxAttempts: config.modelPullMaxAttempts,
    baseDelayMs: config.modelPullBaseDelayMs,
    maxDelayMs: config.modelPullMaxDelayMs,
  };
}

/** The wait before retry number `retry` (0 = the first retry), jitter included. */
export function retryDelay(policy: RetryPolicy, retry: number, random: () => number = Math.random): number {
  const ceiling = backoffCeiling(
    { baseMs: policy.baseDelayMs, maxMs: policy.maxDelayMs, jitter: "none" },
    retry,
  );
  return Math.round(ceiling * (1 - JITTER_FRACTION * random()));
}

export interface RetryEvent {
  /** 1-based number of the retry about to happen. */
  retry: number;
  maxAttempts: number;
  delayMs: number;
  reason: string;
  /** Whether the delay came from the far end's Retry-After. */
  retryAfter: boolean;
}

export interface RetryOptions {
  policy: RetryPolicy;
  sleep?: Sleep;
  random?: () => number;
  signal?: AbortSignal;
  onRetry?: (event: RetryEvent) => void;
}

export interface Attempt {
  /** Call when the attempt moved bytes; a later failure then starts the count again. */
  progressed(): void;
}

/** The error that ends a pull whose retries are spent, naming the setting that allows more. */
function gaveUp(err: PullError, retries: number, policy: RetryPolicy): PullError {
  return new PullError(
    "XIM_PULL_FAILED",
    `gave up after ${retries + 1} tries (XEROTIER_AGENT_MODEL_PULL_MAX_ATTEMPTS=${policy.maxAttempts} retries): ${err.message}`,
    {
      retryable: false,
      cause: err,
      hint:
        err.hint ??
        "raise XEROTIER_AGENT_MODEL_PULL_MAX_ATTEMPTS on an unreliable network; bytes already on disk are kept and resumed",
    },
  );
}

/** Report retry number `retries + 1` and return its wait: the far end's Retry-After (capped), else the backoff. */
function announceRetry(err: PullError, retries: number, options: RetryOptions): number {
  const fromServer = err.retryAfterMs !== undefined;
  const delayMs = fromServer
    ? Math.min(err.retryAfterMs ?? 0, RETRY_AFTER_CAP_MS)
    : retryDelay(options.policy, retries, options.random);
  options.onRetry?.({
    retry: retries + 1,
    maxAttempts: options.policy.maxAttempts,
    delayMs,
    reason: messageOf(err),
    retryAfter: fromServer,
  });
  return delayMs;
}

/** A failure worth another try: retryable, and the caller has not given up (aborted). */
function retryable(err: unknown, signal: AbortSignal | undefined): err is PullError {
  return !signal?.aborted && err instanceof PullError && err.retryable;
}

/**
 * After a failed attempt: rethrow what is not worth another try, else wait
 * for the next one. Returns the retries used so far; an attempt that moved
 * bytes was progress, so the count starts again (unless its error counts).
 */
async function waitToRetry(
  err: unknown,
  moved: boolean,
  retries: number,
  options: RetryOptions,
): Promise<number> {
  const { policy, signal } = options;
  if (!retryable(err, signal)) throw err;
  const used = moved && !err.countAttempt ? 0 : retries;
  if (used >= policy.maxAttempts) throw gaveUp(err, used, policy);
  const delayMs = announceRetry(err, used, options);
  await (options.sleep ?? realSleep)(delayMs, signal);
  if (signal?.aborted) throw err;
  return used + 1;
}

/** Run `op` until it succeeds, a non-retryable error occurs, or the retries are spent. */
export async function withRetry<T>(op: (attempt: Attempt) => Promise<T>, options: RetryOptions): Promise<T> {
  let retries = 0;
  for (;;) {
    let moved = false;
    try {
      return await op({ progressed: () => (moved = true) });
    } catch (err) {
      retries = await waitToRetry(err, moved, retries, options);
    }
  }
}
