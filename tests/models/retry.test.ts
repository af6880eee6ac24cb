import assert from "node:assert/strict";
import { test } from "node:test";
import { JITTER_FRACTION, retryDelay, retryPolicy, withRetry } from "../../src/models/retry.ts";
import { PullError } from "../../src/models/source.ts";

const defaults = retryPolicy({
  modelPullMaxAttempts: 5,
  modelPullBaseDelayMs: 1000,
  modelPullMaxDelayMs: 15000,
});

test("the default retry waits are 1, 2, 4, 8 and 15 s (capped), jitter only shortening them by up to 10 %", () => {
  assert.deepEqual(
    [0, 1, 2, 3, 4].map((i) => retryDelay(defaults, i, () => 0)),
    [1000, 2000, 4000, 8000, 15000],
  );
  for (const [i, ceiling] of [1000, 2000, 4000, 8000, 15000].entries()) {
    const d = retryDelay(defaults, i, () => 0.999);
    assert.ok(d <= ceiling && d >= ceiling * (1 - JITTER_FRACTION), `${d} within jitter of ${ceiling}`);
  }
});

test("a fake clock sees the whole retry sequence, then the reason of the last failure", async () => {
  let t = 0;
  const at: number[] = [];
  await assert.rejects(
    withRetry(
      async () => {
        at.push(t);
        throw new PullError("XIM_PULL_NETWORK", "connection reset", { retryable: true });
      },
      {
        policy: defaults,
        random: () => 0,
        sleep: async (ms) => {
          t += ms;
        },
      },
    ),
    /gave up after 6 tries .*: connection reset/,
  );
  assert.deepEqual(at, [0, 1000, 3000, 7000, 15000, 30000]);
});

test("a non-retryable failure ends the loop at once, and any other error is not retried", async () => {
  let calls = 0;
  await assert.rejects(
    withRetry(
      async () => {
        calls += 1;
        throw new PullError("XIM_PULL_REFUSED", "HTTP 404", { retryable: false });
      },
      { policy: defaults, sleep: async () => {} },
    ),
    /HTTP 404/,
  );
  await assert.rejects(
    withRetry(
      async () => {
        calls += 1;
        throw new Error("bug");
      },
      { policy: defaults, sleep: async () => {} },
    ),
    /bug/,
  );
  assert.equal(calls, 2);
});

test("Retry-After replaces the computed wait, within a cap", async () => {
  const waits: number[] = [];
  let calls = 0;
  await withRetry(
    async () => {
      calls += 1;
      if (calls === 1) throw new PullError("X", "busy", { retryable: true, retryAfterMs: 30_000 });
      if (calls === 2) throw new PullError("X", "busy", { retryable: true, retryAfterMs: 86_400_000 });
      return "ok";
    },
    { policy: defaults, sleep: async (ms) => void waits.push(ms) },
  );
  assert.deepEqual(waits, [30_000, 600_000]);
});
