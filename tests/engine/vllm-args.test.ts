import assert from "node:assert/strict";
import { describe, test } from "node:test";
import { simCommand } from "../../src/engine/create.ts";
import { buildVllmCommand, childEnv, redactArgs, type VllmSettings } from "../../src/engine/vllm-args.ts";

const base: VllmSettings = {
  vllmPath: "/usr/local/bin/xerotier-vllm",
  vllmArgs: [],
  vllmEnv: {},
  gpuMemoryUtilization: 0.9,
  maxModelLen: undefined,
  tensorParallelSize: undefined,
  maxNumSeqs: undefined,
};
const launch = {
  model: "/models/llama",
  servedModelName: "llama",
  endpoint: { host: "127.0.0.1", port: 41000 },
};
const HEAD = [
  "serve",
  "/models/llama",
  "--host",
  "127.0.0.1",
  "--port",
  "41000",
  "--served-model-name",
  "llama",
];

describe("the vllm serve command line", () => {
  test("defaults: the launcher from XEROTIER_AGENT_VLLM_PATH, loopback address, served name, memory fraction", () => {
    const cmd = buildVllmCommand(base, launch, {});
    assert.equal(cmd.file, "/usr/local/bin/xerotier-vllm");
    assert.deepEqual(cmd.args, [...HEAD, "--gpu-memory-utilization", "0.9"]);
    assert.deepEqual(cmd.warnings, []);
  });

  test("explicit settings become flags; XEROTIER_AGENT_VLLM_ARGS come last so the user's value wins", () => {
    const cmd = buildVllmCommand(
      {
        ...base,
        maxModelLen: 32768,
        tensorParallelSize: 2,
        maxNumSeqs: 64,
        vllmArgs: ["--gpu-memory-utilization", "0.8", "--enforce-eager"],
      },
      launch,
      {},
    );
    assert.deepEqual(cmd.args, [
      ...HEAD,
      "--gpu-memory-utilization",
      "0.9",
      "--max-model-len",
      "32768",
      "--tensor-parallel-size",
      "2",
      "--max-num-seqs",
      "64",
      "--gpu-memory-utilization",
      "0.8",
      "--enforce-eager",
    ]);
  });

  test("the planner's args come first; settings it already chose are not repeated", () => {
    const plan = {
      args: ["--tensor-parallel-size=4", "--max-model-len", "16384", "--quantization", "fp8"],
      env: {},
    };
    const cmd = buildVllmCommand(
      { ...base, tensorParallelSize: 2, maxModelLen: 8192 },
      { ...launch, plan },
      {},
    );
    assert.deepEqual(cmd.args, [...HEAD, ...plan.args, "--gpu-memory-utilization", "0.9"]);
  });

  test("--host, --port and --uds in user args are dropped with a warning: xim owns the engine's address", () => {
    const cmd = buildVllmCommand(
      { ...base, vllmArgs: ["--port", "8000", "--host=0.0.0.0", "--uds", "/tmp/s", "--enforce-eager"] },
      launch,
      {},
    );
    assert.deepEqual(cmd.args.slice(HEAD.length), ["--gpu-memory-utilization", "0.9", "--enforce-eager"]);
    assert.equal(cmd.warnings.length, 3);
    assert.match(cmd.warnings[0], /ignored '--port 8000'/);
  });

  test("with XEROTIER_AGENT_VLLM_SOCKET_PATH the engine serves on --uds instead of host and port", () => {
    const cmd = buildVllmCommand(base, { ...launch, endpoint: { socketPath: "/run/xim/engine.sock" } }, {});
    assert.deepEqual(cmd.args.slice(0, 6), [
      "serve",
      "/models/llama",
      "--uds",
      "/run/xim/engine.sock",
      "--served-model-name",
      "llama",
    ]);
    assert.ok(!cmd.args.includes("--port"));
  });

  test("secret-looking flag values are redacted for the log", () => {
    assert.deepEqual(redactArgs(["serve", "m", "--api-key", "k1", "k2", "--hf-token=t", "--port", "1"]), [
      "serve",
      "m",
      "--api-key",
      "[redacted]",
      "[redacted]",
      "--hf-token=[redacted]",
      "--port",
      "1",
    ]);
  });

  test("environment: the node's, minus XEROTIER_AGENT_*, then the plan's, then XEROTIER_AGENT_VLLM_ENV", () => {
    const cmd = buildVllmCommand(
      { ...base, vllmEnv: { VLLM_CPU_KVCACHE_SPACE: "40", SHARED: "user" } },
      { ...launch, plan: { args: [], env: { VLLM_CPU_OMP_THREADS_BIND: "0-31", SHARED: "plan" } } },
      {
        PATH: "/usr/bin",
        XEROTIER_AGENT_JOIN_KEY: "xjk_secret",
        XEROTIER_AGENT_VLLM_SALT_SECRET: "s",
        UNSET: undefined,
      },
    );
    assert.deepEqual(cmd.env, {
      PATH: "/usr/bin",
      VLLM_CPU_OMP_THREADS_BIND: "0-31",
      VLLM_CPU_KVCACHE_SPACE: "40",
      SHARED: "user",
    });
    assert.deepEqual(childEnv({ A: "1", XEROTIER_AGENT_X: "2" }), { A: "1" });
  });
});

describe("the engine-sim command line (XEROTIER_AGENT_ENGINE=sim)", () => {
  test("runs this xim as `engine-sim` on the endpoint, with the sim's options from the settings and XEROTIER_AGENT_VLLM_ARGS", () => {
    const cmd = simCommand(
      {
        vllmArgs: ["--ttft-ms", "50", "--enforce-eager", "--itl-ms=5", "--kv-cache-dtype", "fp8"],
        vllmEnv: { A: "1" },
        maxNumSeqs: 8,
        maxModelLen: undefined,
      },
      {
        model: "/models/demo",
        servedModelName: "demo",
        sim: { outputTokens: 32 },
        env: { PATH: "/bin", XEROTIER_AGENT_JOIN_KEY: "x" },
      },
      { host: "127.0.0.1", port: 41000 },
    );
    assert.equal(cmd.file, process.execPath);
    const at = cmd.args.indexOf("engine-sim");
    assert.ok(at >= 0);
    assert.deepEqual(cmd.args.slice(at), [
      "engine-sim",
      "--host",
      "127.0.0.1",
      "--port",
      "41000",
      "--model",
      "demo",
      "--root",
      "/models/demo",
      "--exit-on-stdin-close",
      "--output-tokens",
      "32",
      "--max-num-seqs",
      "8",
      "--ttft-ms",
      "50",
      "--itl-ms=5",
    ]);
    assert.equal(cmd.warnings.length, 2);
    assert.match(cmd.warnings[0], /ignored '--enforce-eager'/);
    assert.deepEqual(cmd.env, { PATH: "/bin", A: "1" });
  });
});
