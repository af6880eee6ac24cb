/**
 * The engine's conditions from the supervisor's events, on a clock the test
 * moves: engine_unresponsive follows /health misses of a ready engine, and
 * a crash loop the supervisor gave up on holds past its window until the
 * engine is started again. (tests/engine/supervisor-conditions.test.ts
 * drives the same class with real engine processes.)
 */
import assert from "node:assert/strict";
import { test } from "node:test";
import { EngineConditions } from "../../src/agent/conditions/engine-conditions.ts";
import { ConditionMonitor } from "../../src/agent/conditions/monitor.ts";
import { loadConfig } from "../../src/core/config/load.ts";
import { silentLogger } from "../../src/core/log.ts";
import type { EngineFailure, EngineState, EngineStatus } from "../../src/engine/engine.ts";

let clock = 5_000_000;
const monitor = () =>
  new ConditionMonitor({
    doctor: { config: loadConfig({ env: {}, cwd: "/nonexistent/xim-test" }).config, env: {} },
    logger: silentLogger(),
    checks: [],
  });

const failure = (at: number): EngineFailure =>
  ({
    cause: "unknown",
    summary: "exited with code 1",
    hint: "",
    evidence: "",
    exitCode: 1,
    signal: null,
    lastLines: [],
    at,
  }) as EngineFailure;

const status = (state: EngineState, lastFailure?: EngineFailure): EngineStatus => ({
  state,
  since: clock,
  baseUrl: undefined,
  pid: undefined,
  restarts: 0,
  lastFailure,
});

test("a ready engine missing /health is engine_unresponsive (degraded) until it answers or leaves ready", () => {
  const m = monitor();
  const e = new EngineConditions(m, () => clock);
  e.liveness(1);
  assert.deepEqual(
    m.current().map((c) => [c.condition, c.severity]),
    [["engine_unresponsive", "degraded"]],
  );
  e.liveness(0);
  assert.deepEqual(m.current(), []);
  e.liveness(2);
  e.state(status("loading"));
  assert.deepEqual(m.current(), [], "a killed and restarting engine is no longer 'unresponsive'");
  e.close();
});

test("a crash loop the supervisor gave up on holds past the window, and ends at the next start", () => {
  const m = monitor();
  const e = new EngineConditions(m, () => clock);
  for (let i = 0; i < 4; i++) {
    clock += 1000;
    e.restart({ delayMs: 100, restarts: i + 1, failure: failure(clock) });
  }
  assert.deepEqual(m.current(), [], "four exits are not a loop");
  clock += 1000;
  e.state(status("failed", failure(clock)));
  assert.equal(m.current()[0]?.condition, "engine_crash_loop");
  clock += 120_000;
  e.state(status("failed", failure(clock - 120_000)));
  assert.equal(m.current()[0]?.condition, "engine_crash_loop", "still failed: the loop holds");
  e.state(status("loading"));
  assert.deepEqual(m.current(), []);
  e.close();
});
