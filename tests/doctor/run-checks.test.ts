import assert from "node:assert/strict";
import { after, describe, test } from "node:test";
import { loadConfig } from "../../src/core/config/load.ts";
import { type Check, ok, warn } from "../../src/doctor/check.ts";
import { runChecks } from "../../src/doctor/run-checks.ts";
import { cleanup, tempDir } from "./helpers.ts";

after(cleanup);

function options(timeoutMs?: number) {
  const home = tempDir();
  return { config: loadConfig({ env: { HOME: home }, cwd: home }).config, env: { HOME: home }, timeoutMs };
}

const never = (signal: AbortSignal) =>
  new Promise<never>((_, reject) => signal.addEventListener("abort", () => reject(new Error("aborted"))));

describe("running checks", () => {
  test("results keep the given order, whatever order the checks finish in", async () => {
    const slow: Check = {
      id: "slow",
      group: "disk",
      title: "slow",
      run: async () => {
        await new Promise((r) => setTimeout(r, 50));
        return ok("late");
      },
    };
    const fast: Check = { id: "fast", group: "gpu", title: "fast", run: async () => ok("early") };
    const report = await runChecks([slow, fast], options());
    assert.deepEqual(
      report.checks.map((c) => c.id),
      ["slow", "fast"],
    );
    assert.deepEqual(report.summary, { ok: 2, warn: 0, fail: 0, skipped: 0 });
  });

  test("a check that throws is a failure of that check only", async () => {
    const boom: Check = {
      id: "boom",
      group: "disk",
      title: "boom",
      run: async () => {
        throw new Error("kaputt");
      },
    };
    const fine: Check = { id: "fine", group: "disk", title: "fine", run: async () => ok("fine") };
    const report = await runChecks([boom, fine], options());
    assert.equal(report.checks[0].status, "fail");
    assert.match(report.checks[0].evidence, /the check itself failed: kaputt/);
    assert.equal(report.checks[1].status, "ok");
  });

  test("a check that outlives its own limit fails, and its signal is aborted", {
    timeout: 20_000,
  }, async () => {
    let aborted = false;
    const hang: Check = {
      id: "hang",
      group: "gpu",
      title: "hang",
      timeoutMs: 100,
      run: (_ctx, signal) => {
        signal.addEventListener("abort", () => {
          aborted = true;
        });
        return never(signal);
      },
    };
    const report = await runChecks([hang], options());
    assert.equal(report.checks[0].status, "fail");
    assert.match(report.checks[0].evidence, /did not finish within 0\.1 s/);
    assert.ok(aborted);
  });

  test("the overall deadline stops every unfinished check with a warning naming the command to rerun it", {
    timeout: 20_000,
  }, async () => {
    const hang: Check = {
      id: "hang",
      group: "gpu",
      title: "hang",
      timeoutMs: 60_000,
      run: (_c, s) => never(s),
    };
    const done: Check = { id: "done", group: "gpu", title: "done", run: async () => ok("quick") };
    const report = await runChecks([hang, done], options(200));
    assert.equal(report.checks[0].status, "warn");
    assert.match(report.checks[0].evidence, /overall --timeout \(0\.2 s\) expired/);
    assert.equal(report.checks[0].fix, "xim doctor --check hang --timeout 60");
    assert.equal(report.checks[1].status, "ok");
  });

  test("a warning without a fix gets a pointer to the docs, and multi-line evidence becomes one line", async () => {
    const lazy: Check = {
      id: "lazy",
      group: "disk",
      title: "lazy",
      run: async () => ({ status: "warn", evidence: "a\nb" }),
    };
    const withFix: Check = { id: "w", group: "disk", title: "w", run: async () => warn("x", "do y") };
    const report = await runChecks([lazy, withFix], options());
    assert.equal(report.checks[0].evidence, "a; b");
    assert.match(report.checks[0].fix ?? "", /docs\/doctor\.md/);
    assert.equal(report.checks[1].fix, "do y");
  });
});
