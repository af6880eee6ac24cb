/**
 * The condition monitor: watched checks of the doctor's registry run on
 * their schedules (clock and sleep injected, so no test waits on time),
 * each raise and clear is logged once and reported once, and sources that
 * raise the same condition are shown as one.
 */
import assert from "node:assert/strict";
import { describe, test } from "node:test";
import { ConditionMonitor, type WatchedCheck, watchedChecks } from "../../src/agent/conditions/monitor.ts";
import { loadConfig } from "../../src/core/config/load.ts";
import { createLogger } from "../../src/core/log.ts";
import { ALL_CHECKS } from "../../src/doctor/all-checks.ts";
import { type CheckOutcome, fail, ok, raisesOn } from "../../src/doctor/check.ts";
import type { NodeCondition } from "../../src/protocol/conditions.ts";

const { config } = loadConfig({ env: {}, cwd: "/nonexistent/xim-test" });

/** A logger whose lines the test reads. */
function capture() {
  const lines: Array<{ msg: string; condition?: string }> = [];
  const logger = createLogger({
    level: "debug",
    destination: { write: (s: string) => lines.push(JSON.parse(s)) },
  });
  return { logger, lines };
}

/** A clock the test advances, and a sleep that hands control back to the test instead of waiting. */
function manualTime() {
  let now = 1_000_000;
  const sleeps: Array<{ until: number; wake: () => void }> = [];
  return {
    now: () => now,
    sleep: (ms: number, signal?: AbortSignal) =>
      new Promise<void>((resolve) => {
        sleeps.push({ until: now + ms, wake: resolve });
        signal?.addEventListener("abort", () => resolve(), { once: true });
      }),
    /** Move the clock and wake every sleep that is due; let the woken work run. */
    async advance(ms: number) {
      now += ms;
      for (const s of sleeps.splice(0)) {
        if (s.until <= now) s.wake();
        else sleeps.push(s);
      }
      for (let i = 0; i < 20; i++) await new Promise((r) => setImmediate(r));
    },
  };
}

function scripted(
  id: string,
  everyMs: number,
  outcomes: () => CheckOutcome,
): WatchedCheck & { runs: number } {
  const check = {
    id,
    group: "gpu" as const,
    title: id,
    runs: 0,
    watch: raisesOn("gpu_lost", "blocking", everyMs),
    async run() {
      check.runs++;
      return outcomes();
    },
  };
  return check;
}

describe("the condition monitor", { timeout: 30_000 }, () => {
  test("the registry's watched checks include the GPU, disk and socket-buffer checks, and none without an interval", () => {
    const ids = watchedChecks().map((c) => c.id);
    for (const id of ["gpu-driver", "gpu-memory-health", "disk-space", "socket-buffers"])
      assert.ok(ids.includes(id), id);
    assert.ok(watchedChecks().every((c) => c.watch.everyMs >= 1000));
    // The GPU check runs often enough to show a lost GPU within 15 s (its tool limit is 4 s).
    assert.ok((ALL_CHECKS.find((c) => c.id === "gpu-driver")?.watch?.everyMs ?? Infinity) <= 10_000);
  });

  test("a failing check raises its condition, a passing one clears it; each logged and reported once", async () => {
    const time = manualTime();
    const { logger, lines } = capture();
    let gpu: CheckOutcome = ok("driver answers");
    const check = scripted("gpu-driver", 5000, () => gpu);
    const changes: NodeCondition[][] = [];
    const monitor = new ConditionMonitor({
      doctor: { config, env: {} },
      logger,
      checks: [check],
      now: time.now,
      sleep: time.sleep,
      onChange: (c) => changes.push(c),
    });
    try {
      assert.deepEqual(await monitor.start(), []);
      assert.equal(check.runs, 1, "the start-up pass ran the check");
      gpu = fail("nvidia-smi: Failed to initialize NVML: Unknown Error", "Restart the container.");
      await time.advance(4999);
      assert.equal(check.runs, 1, "not before its interval");
      await time.advance(1);
      assert.equal(check.runs, 2);
      const raised = monitor.current();
      assert.equal(raised.length, 1);
      assert.deepEqual(raised[0], {
        condition: "gpu_lost",
        severity: "blocking",
        since: time.now(),
        message: "nvidia-smi: Failed to initialize NVML: Unknown Error",
        fix: "Restart the container.",
      });
      await time.advance(5000);
      await time.advance(5000);
      assert.equal(check.runs, 4);
      assert.equal(monitor.current()[0].since, raised[0].since, "since is when it was first seen");
      gpu = ok("driver answers");
      await time.advance(5000);
      assert.deepEqual(monitor.current(), []);
      assert.equal(changes.length, 2, "one report for the raise, one for the clear");
      assert.equal(lines.filter((l) => l.msg.startsWith("condition raised: gpu_lost")).length, 1);
      assert.equal(lines.filter((l) => l.msg.startsWith("condition cleared: gpu_lost")).length, 1);
    } finally {
      await monitor.stop();
    }
  });

  test("peer text in a finding is made printable and bounded", () => {
    const monitor = new ConditionMonitor({
      doctor: { config, env: {} },
      logger: capture().logger,
      checks: [],
    });
    monitor.set("x", {
      condition: "gpu_lost",
      severity: "blocking",
      message: `bad\u001b[31m${"x".repeat(5000)}`,
      fix: "fix",
    });
    const [c] = monitor.current();
    assert.ok(!c.message.includes("\u001b"));
    assert.ok(c.message.length <= 1024);
  });

  test("two sources of one condition are shown once, at the worse severity", () => {
    const monitor = new ConditionMonitor({
      doctor: { config, env: {} },
      logger: capture().logger,
      checks: [],
    });
    monitor.set("check:lmcache-disk", {
      condition: "lmcache_degraded",
      severity: "info",
      message: "a",
      fix: "f",
    });
    monitor.set("check:lmcache-redis", {
      condition: "lmcache_degraded",
      severity: "degraded",
      message: "b",
      fix: "f",
    });
    assert.deepEqual(
      monitor.current().map((c) => [c.condition, c.severity, c.message]),
      [["lmcache_degraded", "degraded", "b"]],
    );
    monitor.set("check:lmcache-redis", undefined);
    assert.equal(monitor.current()[0].severity, "info");
  });
});
