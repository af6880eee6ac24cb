import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { describe, test } from "node:test";
import { classifyNvidiaSmiFailure, meansGpuLost } from "../../src/hardware/nvidia-failure.ts";

const GPU = join(import.meta.dirname, "../fixtures/gpu");

/** The captured output and exit code of a failing nvidia-smi scenario (tests/fixtures/gpu/README.md). */
function captured(scenario: string): [string, number] {
  const dir = join(GPU, scenario);
  return [
    readFileSync(join(dir, "nvidia-smi.error.txt"), "utf8"),
    Number(readFileSync(join(dir, "nvidia-smi.exit"), "utf8")),
  ];
}

describe("what a failed nvidia-smi means", () => {
  test("captured failures are told apart by their text", () => {
    assert.equal(classifyNvidiaSmiFailure(...captured("nvml-unknown-error")), "nvml-unknown-error");
    assert.equal(classifyNvidiaSmiFailure(...captured("driver-library-mismatch")), "driver-mismatch");
    assert.equal(classifyNvidiaSmiFailure(...captured("no-driver")), "no-driver");
  });

  test("the text decides without an exit code, the documented exit codes without a known text", () => {
    assert.equal(classifyNvidiaSmiFailure("No devices were found"), "no-devices");
    assert.equal(classifyNvidiaSmiFailure("", 9), "no-driver");
    assert.equal(classifyNvidiaSmiFailure("", 6), "no-devices");
    assert.equal(classifyNvidiaSmiFailure("", 12), "nvml-library-missing");
    assert.equal(classifyNvidiaSmiFailure("", 15), "gpu-lost");
    assert.equal(
      classifyNvidiaSmiFailure(
        "Unable to determine the device handle for GPU0000:3B:00.0: GPU is lost.",
        255,
      ),
      "gpu-lost",
    );
    assert.equal(classifyNvidiaSmiFailure("something new", 255), "other");
  });

  test("only failures of GPUs that were there count as a lost GPU", () => {
    assert.equal(meansGpuLost("nvml-unknown-error"), true);
    assert.equal(meansGpuLost("gpu-lost"), true);
    assert.equal(meansGpuLost("no-devices"), true);
    assert.equal(meansGpuLost("no-driver"), false);
    assert.equal(meansGpuLost("driver-mismatch"), false);
    assert.equal(meansGpuLost("other"), false);
  });
});
