import assert from "node:assert/strict";
import { test } from "node:test";
import { RouterCredit } from "../../src/router/credits.ts";
import { waitFor } from "./harness.ts";

test("credit is returned at once when the client took the replenish threshold", () => {
  const grants: number[] = [];
  const credit = new RouterCredit({
    windowBytes: 1000,
    replenishBytes: 500,
    idleMs: 60_000,
    grant: (n) => grants.push(n),
  });
  credit.wrote(300, true);
  assert.deepEqual(grants, []);
  credit.wrote(300, true);
  assert.deepEqual(grants, [600]);
  credit.close();
});

test("bytes written but not drained count only once the socket drains", () => {
  const grants: number[] = [];
  const credit = new RouterCredit({
    windowBytes: 1000,
    replenishBytes: 500,
    idleMs: 60_000,
    grant: (n) => grants.push(n),
  });
  credit.wrote(800, false);
  assert.deepEqual(grants, []);
  credit.drained();
  assert.deepEqual(grants, [800]);
  credit.close();
});

test("bytes below the threshold come back after the idle time, not while takes keep coming", {
  timeout: 10_000,
}, async () => {
  const grants: number[] = [];
  // Takes every 5 ms against a 200 ms idle time: far apart enough that a loaded machine cannot
  // make the stream look idle in between.
  const credit = new RouterCredit({
    windowBytes: 1 << 20,
    replenishBytes: 1 << 19,
    idleMs: 200,
    grant: (n) => grants.push(n),
  });
  for (let i = 0; i < 20; i++) {
    credit.wrote(10, true);
    await new Promise((r) => setTimeout(r, 5));
  }
  assert.deepEqual(grants, [], "no credit while the stream is busy");
  await waitFor(() => (grants.length > 0 ? true : undefined), { timeoutMs: 5000, what: "the idle credit" });
  assert.deepEqual(grants, [200]);
  credit.close();
});

test("flow control off (window 0) never grants", () => {
  const grants: number[] = [];
  const credit = new RouterCredit({
    windowBytes: 0,
    replenishBytes: 1,
    idleMs: 1,
    grant: (n) => grants.push(n),
  });
  credit.wrote(5000, true);
  assert.deepEqual(grants, []);
  credit.close();
});

test("the idle time is read from the injected clock: a standing clock returns nothing, a moved one returns the bytes", {
  timeout: 10_000,
}, async () => {
  const grants: number[] = [];
  let now = 0;
  const credit = new RouterCredit({
    windowBytes: 1000,
    replenishBytes: 500,
    idleMs: 20,
    grant: (n) => grants.push(n),
    now: () => now,
  });
  credit.wrote(100, true);
  // Several idle timers' worth of real time. Nothing is bounded by it: however many timers fired
  // meanwhile, a clock that did not move says the client was never idle.
  await new Promise((resolve) => setTimeout(resolve, 100));
  assert.deepEqual(grants, []);
  now = 1000;
  await waitFor(() => grants.length > 0, { timeoutMs: 5000, what: "the idle credit" });
  assert.deepEqual(grants, [100]);
  credit.close();
});
