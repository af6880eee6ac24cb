import assert from "node:assert/strict";
import {
  existsSync,
  mkdirSync,
  mkdtempSync,
  readdirSync,
  readFileSync,
  rmSync,
  writeFileSync,
} from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, describe, test } from "node:test";
import { commands } from "../../src/cli/commands.ts";
import { recordingIo } from "../../src/cli/io.ts";
import { runCli } from "../../src/cli/program.ts";
import type { XimError } from "../../src/core/errors.ts";
import type { Gpu } from "../../src/hardware/detect.ts";
import { prepareMoeForRun, type TuneConfig, tuneMoe } from "../../src/models/tune.ts";

const FIXTURES = join(import.meta.dirname, "..", "fixtures");
const MODELS = join(FIXTURES, "models");
const BIN = join(FIXTURES, "bin");
const root = mkdtempSync(join(tmpdir(), "xim-tune-"));
after(() => rmSync(root, { recursive: true, force: true }));

function gpu(name: string, index = 0): Gpu {
  return {
    vendor: "nvidia",
    index,
    name,
    memoryTotalMiB: 81559,
    memoryFreeMiB: 81081,
    boardMemoryMiB: 81559,
    computeCapability: "9.0",
    driverVersion: "565.57.01",
    uuid: null,
    migEnabled: false,
    migSlice: null,
  };
}
const H100 = gpu("NVIDIA H100 80GB HBM3");

let n = 0;
/** A fresh config folder, an empty "shipped configs" folder, and the fake tuner. */
function setup(tuner = "fake-moe-tuner", name = "E=8,N=14336,device_name=NVIDIA_H100_80GB_HBM3.json") {
  n += 1;
  const dir = join(root, `t${n}`);
  const shipped = join(dir, "vllm-configs");
  mkdirSync(shipped, { recursive: true });
  const config: TuneConfig = {
    moeConfigPath: join(dir, "moe"),
    modelCacheDir: join(dir, "models"),
    vllmPath: "vllm",
    tensorParallelSize: undefined,
    vllmQuantization: undefined,
    autoConfig: true,
    autoConfigureGpu: true,
  };
  const argsFile = join(dir, "tuner-args.txt");
  const env = {
    PATH: "/usr/bin:/bin",
    XIM_MOE_TUNER: join(BIN, tuner),
    XIM_VLLM_MOE_CONFIG_DIR: shipped,
    FAKE_MOE_TUNER_NAME: name,
    FAKE_MOE_TUNER_ARGS: argsFile,
  };
  const args = () => (existsSync(argsFile) ? readFileSync(argsFile, "utf8").trim().split("\n") : []);
  return { dir, shipped, config, env, args };
}

describe("tuning with vLLM's tuner (a test double here: no GPU in CI)", () => {
  test("a valid config from the tuner is validated and stored under vLLM's file name", async () => {
    const s = setup();
    const out = await tuneMoe({
      modelDir: join(MODELS, "mixtral-8x7b-instruct"),
      config: s.config,
      env: s.env,
      gpus: [H100],
    });
    assert.equal(out.status, "tuned");
    const target = join(s.config.moeConfigPath ?? "", "E=8,N=14336,device_name=NVIDIA_H100_80GB_HBM3.json");
    assert.equal(out.status === "tuned" && out.path, target);
    assert.deepEqual(out.status === "tuned" && out.batchSizes, [1, 2, 64, 4096]);
    const stored = JSON.parse(readFileSync(target, "utf8"));
    assert.deepEqual(stored["64"], {
      BLOCK_SIZE_M: 32,
      BLOCK_SIZE_N: 128,
      BLOCK_SIZE_K: 128,
      GROUP_SIZE_M: 16,
      num_warps: 4,
      num_stages: 3,
    });
    const args = s.args();
    assert.deepEqual(args.slice(0, 7), [
      "--model",
      join(MODELS, "mixtral-8x7b-instruct"),
      "--tp-size",
      "1",
      "--dtype",
      "auto",
      "--tune",
    ]);
    assert.ok(!args.includes("--trust-remote-code"), "Mixtral needs no custom code");
  });

  test("DeepSeek-V3 at TP 8: fp8_w8a8 for the tuner, custom code trusted, the block-quantised name", async () => {
    const name = "E=256,N=256,device_name=NVIDIA_H200,dtype=fp8_w8a8,block_shape=[128,128].json";
    const s = setup("fake-moe-tuner", name);
    const gpus = Array.from({ length: 8 }, (_, i) => gpu("NVIDIA H200", i));
    const out = await tuneMoe({ modelDir: join(MODELS, "deepseek-v3"), config: s.config, env: s.env, gpus });
    assert.equal(out.status, "tuned");
    const args = s.args();
    assert.equal(
      args[args.indexOf("--tp-size") + 1],
      "8",
      "TP defaults to the GPUs that can shard the model",
    );
    assert.equal(args[args.indexOf("--dtype") + 1], "fp8_w8a8");
    assert.ok(args.includes("--trust-remote-code"));
    assert.ok(existsSync(join(s.config.moeConfigPath ?? "", name)));
  });

  test("a bad config from the tuner is rejected and nothing is stored", async () => {
    const s = setup("fake-moe-tuner-bad");
    await assert.rejects(
      tuneMoe({
        modelDir: join(MODELS, "mixtral-8x7b-instruct"),
        config: s.config,
        env: s.env,
        gpus: [H100],
      }),
      (err: XimError) => {
        assert.equal(err.code, "XIM_MOE_BAD_CONFIG");
        assert.match(err.message, /batch size 1: num_warps/);
        assert.match(err.message, /key "large" is not a batch size/);
        return true;
      },
    );
    assert.deepEqual(
      readdirSync(s.config.moeConfigPath ?? "").filter((f) => f.endsWith(".json")),
      [],
    );
  });

  test("a tuner that fails reports its last lines and stores nothing", async () => {
    const s = setup("fake-moe-tuner-fail");
    await assert.rejects(
      tuneMoe({
        modelDir: join(MODELS, "mixtral-8x7b-instruct"),
        config: s.config,
        env: s.env,
        gpus: [H100],
      }),
      (err: XimError) =>
        err.code === "XIM_MOE_TUNER_FAILED" &&
        /exited with code 1:[\s\S]*CUDA out of memory/.test(err.message),
    );
  });

  test("an existing config (ours, or shipped with vLLM) is reported and the tuner is not run; --force re-tunes", async () => {
    const s = setup();
    const file = "E=8,N=14336,device_name=NVIDIA_H100_80GB_HBM3.json";
    writeFileSync(join(s.shipped, file), "{}");
    const base = {
      modelDir: join(MODELS, "mixtral-8x7b-instruct"),
      config: s.config,
      env: s.env,
      gpus: [H100],
    };
    const shipped = await tuneMoe(base);
    assert.equal(shipped.status, "existing");
    assert.match(shipped.message, /shipped with the installed vLLM/);
    assert.deepEqual(s.args(), [], "the tuner did not run");
    const forced = await tuneMoe({ ...base, force: true });
    assert.equal(forced.status, "tuned");
    const ours = await tuneMoe(base);
    assert.equal(ours.status, "existing");
    assert.match(ours.message, /in XEROTIER_AGENT_MOE_CONFIG_PATH/);
  });

  test("an H200 config under the pre-#28349 device name also counts as existing", async () => {
    const s = setup();
    writeFileSync(join(s.shipped, "E=8,N=14336,device_name=NVIDIA_H200_NVL.json"), "{}");
    const out = await tuneMoe({
      modelDir: join(MODELS, "mixtral-8x7b-instruct"),
      config: s.config,
      env: s.env,
      gpus: [gpu("NVIDIA H200 NVL")],
    });
    assert.equal(out.status, "existing");
  });

  test("without a GPU nothing is invented: an error, exit 1", async () => {
    const s = setup();
    await assert.rejects(
      tuneMoe({ modelDir: join(MODELS, "mixtral-8x7b-instruct"), config: s.config, env: s.env, gpus: [] }),
      (err: XimError) => err.code === "XIM_NO_GPU" && err.exitCode === 1,
    );
    assert.deepEqual(s.args(), []);
  });

  test("a dense model has nothing to tune", async () => {
    const s = setup();
    const out = await tuneMoe({
      modelDir: join(MODELS, "llama-3-8b-instruct"),
      config: s.config,
      env: s.env,
      gpus: [H100],
    });
    assert.deepEqual(out, { status: "dense", message: "not a Mixture-of-Experts model, nothing to tune" });
  });
});

describe("what xim run does for MoE models", () => {
  test("enabled, MoE, no config for this GPU: VLLM_TUNED_CONFIG_FOLDER is set and tuning runs in the background on a GPU the engine does not use", async () => {
    const s = setup();
    const r = await prepareMoeForRun({
      modelDir: join(MODELS, "mixtral-8x7b-instruct"),
      config: { ...s.config, moeConfigEnabled: true },
      env: s.env,
      gpus: [H100, gpu("NVIDIA H100 80GB HBM3", 1)],
      tensorParallelSize: 1,
    });
    assert.deepEqual(r.env, { VLLM_TUNED_CONFIG_FOLDER: s.config.moeConfigPath });
    assert.ok(r.background, "tuning was started");
    const outcome = await r.background;
    assert.equal(outcome?.status, "tuned");
    const again = await prepareMoeForRun({
      modelDir: join(MODELS, "mixtral-8x7b-instruct"),
      config: { ...s.config, moeConfigEnabled: true },
      env: s.env,
      gpus: [H100],
    });
    assert.equal(again.background, undefined, "a config now exists: nothing to tune");
  });

  test("a failed background tuning is logged, never thrown at the serving path", async () => {
    const s = setup("fake-moe-tuner-fail");
    const r = await prepareMoeForRun({
      modelDir: join(MODELS, "mixtral-8x7b-instruct"),
      config: { ...s.config, moeConfigEnabled: true },
      env: s.env,
      gpus: [H100, gpu("NVIDIA H100 80GB HBM3", 1)],
      tensorParallelSize: 1,
    });
    assert.equal(await r.background, undefined);
  });

  test("disabled, or a dense model: nothing set, nothing started", async () => {
    const s = setup();
    const off = await prepareMoeForRun({
      modelDir: join(MODELS, "mixtral-8x7b-instruct"),
      config: { ...s.config, moeConfigEnabled: false },
      env: s.env,
      gpus: [H100],
    });
    assert.deepEqual(off, { env: {} });
    const dense = await prepareMoeForRun({
      modelDir: join(MODELS, "llama-3-8b-instruct"),
      config: { ...s.config, moeConfigEnabled: true },
      env: s.env,
      gpus: [H100],
    });
    assert.deepEqual(dense, { env: {} });
    assert.ok(!existsSync(s.config.moeConfigPath ?? ""), "no folder created");
  });
});

describe("the tuner and the engine never share a GPU (GPUs from the nvidia-smi test double)", () => {
  async function fixtureGpus(scenario: string): Promise<Gpu[]> {
    const { detectHardware } = await import("../../src/hardware/detect.ts");
    return (await detectHardware({ env: { PATH: BIN, XIM_FIXTURE_GPU: scenario }, skipGpu: false })).gpus;
  }
  const cases: Array<{
    name: string;
    scenario: string;
    tp: number;
    model: string;
    file: string;
    tunesOn: number[] | null;
  }> = [
    {
      name: "8x H100, the engine on 4: the tuner runs on the other 4",
      scenario: "h100x8-nvlink",
      tp: 4,
      model: "mixtral-8x7b-instruct",
      file: "E=8,N=3584,device_name=NVIDIA_H100_80GB_HBM3.json",
      tunesOn: [4, 5, 6, 7],
    },
    {
      name: "8x H100, the engine on all 8: no tuning, and the reason",
      scenario: "h100x8-nvlink",
      tp: 8,
      model: "mixtral-8x7b-instruct",
      file: "E=8,N=1792,device_name=NVIDIA_H100_80GB_HBM3.json",
      tunesOn: null,
    },
    {
      name: "one L40S serving: no tuning, and the reason",
      scenario: "l40s-x1",
      tp: 1,
      model: "qwen3-30b-a3b",
      file: "E=128,N=768,device_name=NVIDIA_L40S.json",
      tunesOn: null,
    },
  ];
  for (const c of cases) {
    test(c.name, async () => {
      const s = setup("fake-moe-tuner", c.file);
      const gpusFile = join(s.dir, "tuner-gpus.txt");
      const gpus = await fixtureGpus(c.scenario);
      const r = await prepareMoeForRun({
        modelDir: join(MODELS, c.model),
        config: { ...s.config, moeConfigEnabled: true },
        env: { ...s.env, FAKE_MOE_TUNER_GPUS: gpusFile },
        gpus,
        tensorParallelSize: c.tp,
      });
      assert.deepEqual(r.env, { VLLM_TUNED_CONFIG_FOLDER: s.config.moeConfigPath });
      if (c.tunesOn === null) {
        assert.equal(r.background, undefined, "no tuning beside the engine");
        assert.match(r.skipped ?? "", /compete for GPU memory.*xim tune-moe --model/);
        assert.ok(!existsSync(gpusFile), "the tuner never ran");
        return;
      }
      assert.equal(r.skipped, undefined);
      assert.equal((await r.background)?.status, "tuned");
      const expected = gpus.filter((g) => c.tunesOn?.includes(g.index)).map((g) => g.uuid ?? String(g.index));
      assert.equal(readFileSync(gpusFile, "utf8").trim(), expected.join(","));
    });
  }

  test("AUTO_CONFIG=0: nothing set, nothing started", async () => {
    const s = setup();
    const r = await prepareMoeForRun({
      modelDir: join(MODELS, "mixtral-8x7b-instruct"),
      config: { ...s.config, moeConfigEnabled: true, autoConfig: false },
      env: s.env,
      gpus: await fixtureGpus("h100x8-nvlink"),
      tensorParallelSize: 1,
    });
    assert.deepEqual(r, { env: {} });
    assert.deepEqual(s.args(), [], "the tuner never ran");
  });

  test("xim tune-moe on a GPU another process holds refuses, naming it, and runs nothing", async () => {
    const s = setup("fake-moe-tuner", "E=8,N=14336,device_name=NVIDIA_H100_80GB_HBM3.json");
    const rec = recordingIo(
      {
        ...s.env,
        HOME: join(root, "home"),
        PATH: BIN,
        XIM_FIXTURE_GPU: "h100-busy",
        XEROTIER_AGENT_LOG_LEVEL: "error",
      },
      root,
    );
    const code = await runCli(
      [
        "tune-moe",
        "--model",
        join(MODELS, "mixtral-8x7b-instruct"),
        "--moe-config-path",
        s.config.moeConfigPath ?? "",
      ],
      rec.io,
      { version: () => "0", verboseVersion: async () => "", commands },
    );
    assert.equal(code, 1, rec.stdout());
    assert.match(rec.stderr(), /GPU 0 \(73912 of 81559 MiB in use\).*compete for its memory/);
    assert.deepEqual(s.args(), [], "the tuner never ran");
  });
});

describe("xim tune-moe", () => {
  const home = join(root, "home");
  async function xim(argv: string[], env: Record<string, string> = {}) {
    const rec = recordingIo({ HOME: home, PATH: BIN, ...env }, root);
    const code = await runCli(argv, rec.io, { version: () => "0", verboseVersion: async () => "", commands });
    return { code, stdout: rec.stdout(), stderr: rec.stderr() };
  }

  test("--print-name on an 8x H100 machine (fixture nvidia-smi) uses the TP the GPUs allow", async () => {
    const r = await xim(["tune-moe", "--model", join(MODELS, "mixtral-8x7b-instruct"), "--print-name"], {
      XIM_FIXTURE_GPU: "h100x8-nvlink",
    });
    assert.equal(r.code, 0, r.stderr);
    assert.equal(r.stdout, "E=8,N=1792,device_name=NVIDIA_H100_80GB_HBM3.json\n");
    const tp2 = await xim(
      [
        "tune-moe",
        "--model",
        join(MODELS, "mixtral-8x7b-instruct"),
        "--print-name",
        "--tensor-parallel-size",
        "2",
      ],
      { XIM_FIXTURE_GPU: "h100x8-nvlink" },
    );
    assert.equal(tp2.stdout, "E=8,N=7168,device_name=NVIDIA_H100_80GB_HBM3.json\n");
    // As in the planner: the environment's TP counts only with GPU auto-configuration off.
    const envTp = (auto: string) =>
      xim(["tune-moe", "--model", join(MODELS, "mixtral-8x7b-instruct"), "--print-name"], {
        XIM_FIXTURE_GPU: "h100x8-nvlink",
        XEROTIER_AGENT_TENSOR_PARALLEL_SIZE: "4",
        XEROTIER_AGENT_AUTO_CONFIGURE_GPU: auto,
      });
    assert.equal((await envTp("0")).stdout, "E=8,N=3584,device_name=NVIDIA_H100_80GB_HBM3.json\n");
    assert.equal((await envTp("1")).stdout, "E=8,N=1792,device_name=NVIDIA_H100_80GB_HBM3.json\n");
  });

  test("--print-name --gpu-name works without a GPU", async () => {
    const r = await xim([
      "tune-moe",
      "--model",
      join(MODELS, "qwen3-30b-a3b"),
      "--print-name",
      "--gpu-name",
      "NVIDIA L40S",
      "--json",
    ]);
    assert.equal(r.code, 0, r.stderr);
    const j = JSON.parse(r.stdout);
    assert.equal(j.fileName, "E=128,N=768,device_name=NVIDIA_L40S.json");
    assert.equal(j.experts, 128);
  });

  test("a dense model: the message, exit 0", async () => {
    const r = await xim(["tune-moe", "--model", join(MODELS, "llama-3-8b-instruct")], {
      XIM_FIXTURE_GPU: "l40s-x1",
    });
    assert.equal(r.code, 0, r.stderr);
    assert.equal(r.stdout, "not a Mixture-of-Experts model, nothing to tune\n");
  });

  test("no GPU: says so and exits 1", async () => {
    const r = await xim(["tune-moe", "--model", join(MODELS, "mixtral-8x7b-instruct")], {
      XIM_FIXTURE_GPU: "no-driver",
    });
    assert.equal(r.code, 1);
    assert.match(r.stderr, /no GPU was detected/);
  });

  test("on a GPU it runs the tuner and stores the config in XEROTIER_AGENT_MOE_CONFIG_PATH", async () => {
    const moe = join(root, "cli-moe");
    const shipped = join(root, "cli-shipped");
    mkdirSync(shipped, { recursive: true });
    const r = await xim(["tune-moe", "--model", join(MODELS, "qwen3-30b-a3b"), "--moe-config-path", moe], {
      XIM_FIXTURE_GPU: "l40s-x1",
      XIM_MOE_TUNER: join(BIN, "fake-moe-tuner"),
      XIM_VLLM_MOE_CONFIG_DIR: shipped,
      FAKE_MOE_TUNER_NAME: "E=128,N=768,device_name=NVIDIA_L40S.json",
      XEROTIER_AGENT_LOG_LEVEL: "error",
    });
    assert.equal(r.code, 0, r.stderr);
    assert.match(
      r.stdout,
      /stored a tuned config for 4 batch sizes at .*E=128,N=768,device_name=NVIDIA_L40S\.json/,
    );
    assert.match(r.stderr, /Completed tuning for batch_size=4096/, "the tuner's progress is shown");
    assert.ok(existsSync(join(moe, "E=128,N=768,device_name=NVIDIA_L40S.json")));
  });
});
