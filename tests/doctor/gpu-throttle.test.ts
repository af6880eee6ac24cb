/**
 * gpu-throttle: nvidia-smi's clock throttle reasons. Against the fixture
 * nvidia-smi (a real process): an L40S at full clocks passes, one in HW
 * thermal slowdown warns with the cooling fix, and a running node's monitor
 * turns that into gpu_throttled (degraded) and clears it when the clocks
 * recover. The parser's edge cases run on strings.
 */
import assert from "node:assert/strict";
import { writeFileSync } from "node:fs";
import { join } from "node:path";
import { after, describe, test } from "node:test";
import { ConditionMonitor, type WatchedCheck } from "../../src/agent/conditions/monitor.ts";
import { loadConfig } from "../../src/core/config/load.ts";
import { silentLogger } from "../../src/core/log.ts";
import { findCheck } from "../../src/doctor/all-checks.ts";
import { gpuThrottle, parseThrottleCsv, throttleOutcome } from "../../src/doctor/checks/gpu-throttle.ts";
import { cleanup, doctor, pathWith, tempDir } from "./helpers.ts";

after(cleanup);

const gpuEnv = (scenario: string) => ({ PATH: pathWith(["nvidia-smi"]), XIM_FIXTURE_GPU: scenario });

describe("gpu-throttle", { timeout: 60_000 }, () => {
  test("is in the doctor's registry and watched by a running node as gpu_throttled (degraded)", () => {
    const check = findCheck("gpu-throttle");
    assert.equal(check, gpuThrottle);
    assert.equal(check?.group, "gpu");
    const finding = check?.watch?.condition({ status: "warn", evidence: "hot", fix: "cool it" });
    assert.deepEqual(finding, {
      condition: "gpu_throttled",
      severity: "degraded",
      message: "hot",
      fix: "cool it",
    });
    assert.equal(check?.watch?.condition({ status: "ok", evidence: "fine" }), undefined);
    assert.equal(check?.watch?.condition({ status: "skipped", evidence: "no GPU" }), undefined);
  });

  test("an L40S at full clocks passes", async () => {
    const r = await doctor(gpuEnv("l40s-x1"), { selectors: ["gpu-throttle"] });
    assert.equal(r["gpu-throttle"].status, "ok", r["gpu-throttle"].evidence);
    assert.match(r["gpu-throttle"].evidence, /no thermal or power slowdown on 1 GPU/);
  });

  test("an L40S in HW thermal slowdown warns, naming the GPU and the reason, with the cooling fix", async () => {
    const r = await doctor(gpuEnv("l40s-x1-hot"), { selectors: ["gpu-throttle"] });
    const c = r["gpu-throttle"];
    assert.equal(c.status, "warn", c.evidence);
    assert.match(c.evidence, /^clocks throttled: GPU 0: HW thermal slowdown \(the GPU is too hot/);
    assert.doesNotMatch(
      c.evidence,
      /HW slowdown \(/,
      "the general HW slowdown is explained by the thermal one",
    );
    assert.match(c.fix ?? "", /Check the cooling/);
  });

  test("no nvidia-smi, or one that fails the query, is skipped (gpu-driver reports the failure)", async () => {
    const none = await doctor({ PATH: pathWith([]) }, { selectors: ["gpu-throttle"] });
    assert.equal(none["gpu-throttle"].status, "skipped");
    const lost = await doctor(gpuEnv("nvml-unknown-error"), { selectors: ["gpu-throttle"] });
    assert.equal(lost["gpu-throttle"].status, "skipped");
    assert.match(lost["gpu-throttle"].evidence, /see gpu-driver/);
  });

  test("the parser: each reason on its own, N/A as not active, other lines ignored", () => {
    const rows = parseThrottleCsv(
      [
        "0, Not Active, Active, Not Active, Active",
        "1, Not Active, Not Active, Active, Not Active",
        "2, [N/A], [N/A], [Not Supported], [N/A]",
        "3, Not Active, Not Active, Not Active, Active",
        'Field "clocks_throttle_reasons.x" is not a valid field to query.',
        "",
      ].join("\n"),
    );
    assert.deepEqual(
      rows.map((r) => [r.index, r.active.map((a) => a.field)]),
      [
        ["0", ["hw_power_brake_slowdown", "hw_slowdown"]],
        ["1", ["sw_thermal_slowdown"]],
        ["2", []],
        ["3", ["hw_slowdown"]],
      ],
    );
    const o = throttleOutcome(rows);
    assert.equal(o.status, "warn");
    assert.match(
      o.evidence,
      /GPU 0: HW power brake .*; GPU 1: SW thermal slowdown .*; GPU 3: HW slowdown \(/,
    );
    assert.match(o.fix ?? "", /PSU/);
    assert.match(o.fix ?? "", /dcgmi diag/);
    assert.equal(throttleOutcome([]).status, "skipped");
  });

  test("a running node raises gpu_throttled while the GPU is hot and clears it when its clocks recover", async () => {
    const dir = tempDir("xim-throttle-");
    const scenario = join(dir, "gpu");
    writeFileSync(scenario, "l40s-x1-hot\n");
    const env = { PATH: pathWith(["nvidia-smi"]), XIM_FIXTURE_GPU_FILE: scenario };
    const { config } = loadConfig({ env: {}, cwd: dir });
    const monitor = new ConditionMonitor({
      doctor: { config, env },
      logger: silentLogger(),
      checks: [gpuThrottle as WatchedCheck],
    });
    await monitor.checkNow();
    const [raised] = monitor.current();
    assert.equal(raised?.condition, "gpu_throttled");
    assert.equal(raised?.severity, "degraded");
    assert.match(raised?.message ?? "", /HW thermal slowdown/);
    assert.match(raised?.fix ?? "", /cooling/);

    writeFileSync(scenario, "l40s-x1\n");
    await monitor.checkNow();
    assert.deepEqual(monitor.current(), []);
  });
});
