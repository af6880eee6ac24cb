/**
 * The supervisor and the node's engine conditions, with real engine
 * processes (the fake vLLM, tests/fixtures/bin/vllm): an engine that dies
 * while the GPU is lost is not restarted into a crash loop but waits for
 * the GPU; an engine killed five times within a minute raises
 * `engine_crash_loop`. The minute is measured on a clock the test moves
 * (one second per kill), so a slow machine cannot stretch it.
 */
import assert from "node:assert/strict";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { after, describe, test } from "node:test";
import { fileURLToPath } from "node:url";
import { EngineConditions } from "../../src/agent/conditions/engine-conditions.ts";
import { ConditionMonitor } from "../../src/agent/conditions/monitor.ts";
import { loadConfig } from "../../src/core/config/load.ts";
import { silentLogger } from "../../src/core/log.ts";
import { createEngine, type EngineSettings } from "../../src/engine/create.ts";
import type { Supervisor, SupervisorOptions } from "../../src/engine/supervisor.ts";
import { waitFor } from "../router/harness.ts";
import { until } from "./engine.case.ts";

const FAKE_VLLM = fileURLToPath(new URL("../fixtures/bin/vllm", import.meta.url));
/** The fake's `#!/usr/bin/env node` must find this Node (26), not the machine's. */
const PATH = `${dirname(process.execPath)}:${process.env.PATH ?? ""}`;
/** Generous: two shared cores can stall an engine start for many seconds. */
const WAIT_MS = 60_000;

const dir = mkdtempSync(join(tmpdir(), "xim-supervisor-conditions-"));
const engines: Supervisor[] = [];
after(async () => {
  for (const e of engines) await e.stop(1000);
  rmSync(dir, { recursive: true, force: true });
});

const settings = (env: Record<string, string> = {}): EngineSettings => ({
  engine: "vllm",
  vllmPath: FAKE_VLLM,
  vllmArgs: [],
  vllmEnv: { PATH, ...env },
  gpuMemoryUtilization: 0.9,
  maxModelLen: undefined,
  tensorParallelSize: undefined,
  maxNumSeqs: undefined,
  engineStartupTimeoutSeconds: 60,
});

function engine(env: Record<string, string>, supervisor: Partial<SupervisorOptions>): Supervisor {
  const e = createEngine(settings(env), {
    model: "/models/demo",
    servedModelName: "demo",
    logger: silentLogger(),
    supervisor: { healthIntervalMs: 50, backoff: { baseMs: 50, maxMs: 200, jitter: "none" }, ...supervisor },
  });
  engines.push(e);
  return e;
}

describe("engine conditions", { timeout: 180_000 }, () => {
  test("an engine that dies while the GPU is lost waits for the GPU, then restarts at once", async () => {
    let gpu: string | undefined;
    let asked = 0;
    const e = engine(
      {},
      {
        gpuPollMs: 20,
        // maxFailures 1: were the GPU's exit counted as a crash, the engine would give up.
        maxFailures: 1,
        gpuProbe: async () => {
          asked++;
          return gpu;
        },
      },
    );
    const restarts: number[] = [];
    e.on("restart", (r) => restarts.push(r.restarts));
    await e.start();
    const ready = await until(e, (s) => s.state === "ready", WAIT_MS);
    gpu = "nvidia-smi: Failed to initialize NVML: Unknown Error";
    // The engine dies as vLLM does when NVML fails under it.
    process.kill(ready.pid as number, "SIGKILL");
    const waiting = await until(e, (s) => s.state === "failed", WAIT_MS);
    assert.ok(waiting.lastFailure, "the exit is reported with its failure");
    const before = asked;
    await waitFor(() => asked >= before + 3, { timeoutMs: WAIT_MS, what: "the GPU to be asked again" });
    assert.equal(e.state, "failed", "no restart while the GPU does not answer");
    assert.deepEqual(restarts, []);
    gpu = undefined;
    await until(e, (s) => s.state === "ready", WAIT_MS);
    await e.stop(5000);
  });

  test("an engine killed five times within a minute raises engine_crash_loop (blocking) once; it clears when the kills leave the 60 s window", async () => {
    let clock = 1_000_000;
    const now = () => clock;
    const raised: string[] = [];
    const monitor = new ConditionMonitor({
      doctor: { config: loadConfig({ env: {}, cwd: dir }).config, env: {} },
      logger: silentLogger(),
      checks: [],
      onChange: (cs) => raised.push(cs.map((c) => `${c.condition}/${c.severity}`).join(",")),
    });
    const conditions = new EngineConditions(monitor, now);
    const e = engine({}, { now, maxFailures: 10 });
    e.on("state", (s) => conditions.state(s));
    e.on("restart", (r) => conditions.restart(r));
    await e.start();
    for (let kill = 1; kill <= 5; kill++) {
      const ready = await until(e, (s) => s.state === "ready" && s.restarts === kill - 1, WAIT_MS);
      assert.deepEqual(monitor.current(), [], `no condition after ${kill - 1} kills`);
      clock += 1000;
      process.kill(ready.pid as number, "SIGKILL");
      await until(e, (s) => s.restarts === kill, WAIT_MS);
    }
    assert.deepEqual(raised, ["engine_crash_loop/blocking"], "raised once, at the fifth exit");
    assert.match(monitor.current()[0]?.message ?? "", /exited 5 times within 60 s/);
    await until(e, (s) => s.state === "ready", WAIT_MS);
    assert.equal(monitor.current().length, 1, "a short-lived start does not end the loop");
    // A minute later the kills are out of the window: the next look clears it.
    clock += 60_000;
    conditions.state(e.status());
    assert.deepEqual(monitor.current(), []);
    conditions.close();
    await e.stop(5000);
  });
});
