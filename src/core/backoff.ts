/**
 * @module Exponential backoff shared by reconnects and model pulls.
 * delay(attempt) = min(cap, base * 2^attempt); "full jitter" draws uniformly
 * from [0, delay] so a fleet that lost its router does not reconnect in
 * lockstep. Clock and randomness are injected so tests are exact.
 */

export interface BackoffPolicy {
  baseMs: number;
  maxMs: number;
  /** "none": exact exponential delays; "full": uniform in [0, delay]; "equal": delay/2 + uniform in [0, delay/2]. */
  jitter: "none" | "full" | "equal";
}

/** Delay before retry number `attempt` (0 = first retry), before jitter. */
export function backoffCeiling(policy: BackoffPolicy, attempt: number): number {
  const exp = policy.baseMs * 2 ** Math.max(0, attempt);
  return Math.min(policy.maxMs, exp);
}

export function backoffDelay(
  policy: BackoffPolicy,
  attempt: number,
  random: () => number = Math.random,
): number {
  const ceiling = backoffCeiling(policy, attempt);
  switch (policy.jitter) {
    case "none":
      return ceiling;
    case "full":
      return Math.floor(random() * ceiling);
    case "equal":
      return Math.floor(ceiling / 2 + random() * (ceiling / 2));
  }
}

/** Sleep that a test can replace; resolves early (without throwing) when aborted. */
export type Sleep = (ms: number, signal?: AbortSignal) => Promise<void>;

export const sleep: Sleep = (ms, signal) =>
  new Promise((resolve) => {
    if (signal?.aborted) return resolve();
    const timer = setTimeout(done, ms);
    function done() {
      signal?.removeEventListener("abort", done);
      clearTimeout(timer);
      resolve();
    }
    signal?.addEventListener("abort", done, { once: true });
  });
