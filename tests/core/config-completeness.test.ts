import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { test } from "node:test";
import { settingInfos } from "../../src/core/config/load.ts";
import { lackingFile, skipOption } from "../helpers/prerequisite.ts";

// The seed document is the reference: every XEROTIER_AGENT_* variable it names must be a setting.
// shared/ sits beside the checkout for developers and CI alike.
const shared = join(import.meta.dirname, "..", "..", "..", "shared");
const seedPath = join(shared, "seed", "xim-advanced-configuration.txt");
const known = new Set(settingInfos.map((s) => s.env));

test("every variable of the seed document is in the configuration schema", {
  skip: skipOption(
    lackingFile(seedPath, `${seedPath} is not there`, "CI checks the repository out with shared/ beside it"),
  ),
}, () => {
  const seed = readFileSync(seedPath, "utf8");
  const named = new Set(seed.match(/XEROTIER_AGENT_[A-Z0-9_]+[A-Z0-9]/g) ?? []);
  assert.ok(named.size >= 38, `expected the seed to name at least 38 variables, found ${named.size}`);
  const missing = [...named].filter((name) => !known.has(name));
  assert.deepEqual(missing, []);
});

test("the original agent's variables (research/xerotier.md §4) are in the schema", () => {
  const fromResearch = [
    "JOIN_KEY",
    "MAX_CONCURRENT",
    "LOG_LEVEL",
    "ALLOW_INSECURE",
    "METRICS_PORT",
    "DISABLE_METRICS_SERVER",
    "VLLM_PATH",
    "VLLM_ARGS",
    "VLLM_ENV",
    "VLLM_SALT_SECRET",
    "VLLM_SOCKET_PATH",
    "GPU_MEMORY_UTILIZATION",
    "MAX_NUM_SEQS",
    "MAX_MODEL_LEN",
    "TENSOR_PARALLEL_SIZE",
    "VLLM_QUANTIZATION",
    "KV_CACHE_BACKEND",
    "MODEL_CACHE_MAX_SIZE_GB",
    "SPECULATIVE_ENABLED",
    "SPECULATIVE_METHOD",
    "SPECULATIVE_TOKENS",
    "AUTO_CONFIGURE_GPU",
    "VLLM_DISABLE_CUSTOM_ALL_REDUCE",
  ].map((n) => `XEROTIER_AGENT_${n}`);
  assert.deepEqual(
    fromResearch.filter((n) => !known.has(n)),
    [],
  );
});
