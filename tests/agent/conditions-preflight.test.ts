/**
 * `xim enroll` runs the start-up checks first: a lost GPU (the fixture
 * nvidia-smi printing the NVML "Unknown Error") is printed as an error
 * with its fix before the enrollment is tried; a healthy GPU prints nothing.
 */
import assert from "node:assert/strict";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, test } from "node:test";
import { sandbox } from "../planner/fixtures.ts";
import { baseEnv, xim } from "../router/harness.ts";

const home = mkdtempSync(join(tmpdir(), "xim-preflight-"));
const box = sandbox();
after(() => {
  rmSync(home, { recursive: true, force: true });
  box.cleanup();
});

function enroll(scenario: string) {
  return xim(
    ["enroll", "--join-key", "not-a-join-key"],
    baseEnv(home, {
      PATH: `${box.binWith(["nvidia-smi", "lscpu"])}:/usr/bin:/bin`,
      XIM_FIXTURE_GPU: scenario,
      XEROTIER_AGENT_CONFIG_DIR: join(home, "node"),
      XEROTIER_AGENT_MODEL_CACHE_DIR: join(home, "models"),
    }),
    60_000,
  );
}

test("xim enroll prints a lost GPU as gpu_lost with its fix before it enrolls", {
  timeout: 120_000,
}, async () => {
  const lost = await enroll("nvml-unknown-error");
  assert.match(
    lost.stderr,
    /^error: gpu_lost \(blocking\): nvidia-smi: Failed to initialize NVML: Unknown Error/m,
  );
  assert.match(lost.stderr, /^ {2}fix: .*restart the container/im);
  assert.notEqual(lost.code, 0, "the malformed key still fails the enrollment");
  const healthy = await enroll("l40s-x1");
  assert.doesNotMatch(healthy.stderr, /gpu_lost/);
});
