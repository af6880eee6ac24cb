import assert from "node:assert/strict";
import { join } from "node:path";
import { describe, test } from "node:test";
import * as v from "valibot";
import {
  MoeConfigFileSchema,
  type MoeTuningFor,
  moeConfigFolder,
  moeTuningFor,
  vllmDeviceName,
} from "../../src/models/moe.ts";
import { inspectModel, type ModelInfo } from "../../src/planner/inspect-model.ts";

const MODELS = join(import.meta.dirname, "..", "fixtures", "models");
const MOE = join(import.meta.dirname, "..", "fixtures", "moe");
const H100 = "NVIDIA H100 80GB HBM3";

function name(r: MoeTuningFor): string {
  assert.equal(r.kind, "moe", r.kind === "unsupported" ? r.reason : r.kind);
  return r.kind === "moe" ? r.tuning.fileName : "";
}

describe("the config file name vLLM looks for", () => {
  const cases: Array<{
    model: string;
    dir?: string;
    gpu: string;
    tp: number;
    E: number;
    N: number;
    dtype: string | null;
    file: string;
  }> = [
    {
      model: "mixtral-8x7b-instruct",
      gpu: H100,
      tp: 1,
      E: 8,
      N: 14336,
      dtype: null,
      file: "E=8,N=14336,device_name=NVIDIA_H100_80GB_HBM3.json",
    },
    {
      model: "mixtral-8x7b-instruct",
      gpu: H100,
      tp: 2,
      E: 8,
      N: 7168,
      dtype: null,
      file: "E=8,N=7168,device_name=NVIDIA_H100_80GB_HBM3.json",
    },
    {
      // The exact name vLLM logged for DeepSeek-V3 at TP 8 on H200 (vllm-project/vllm#28349).
      model: "deepseek-v3",
      gpu: "NVIDIA H200",
      tp: 8,
      E: 256,
      N: 256,
      dtype: "fp8_w8a8",
      file: "E=256,N=256,device_name=NVIDIA_H200,dtype=fp8_w8a8,block_shape=[128,128].json",
    },
    {
      model: "qwen3-30b-a3b",
      gpu: H100,
      tp: 1,
      E: 128,
      N: 768,
      dtype: null,
      file: "E=128,N=768,device_name=NVIDIA_H100_80GB_HBM3.json",
    },
    {
      model: "qwen3-30b-a3b",
      gpu: "NVIDIA A100-SXM4-80GB",
      tp: 4,
      E: 128,
      N: 192,
      dtype: null,
      file: "E=128,N=192,device_name=NVIDIA_A100-SXM4-80GB.json",
    },
    {
      model: "qwen3-30b-a3b-fp8",
      dir: MOE,
      gpu: "NVIDIA L40S",
      tp: 2,
      E: 128,
      N: 384,
      dtype: "fp8_w8a8",
      file: "E=128,N=384,device_name=NVIDIA_L40S,dtype=fp8_w8a8,block_shape=[128,128].json",
    },
  ];
  for (const c of cases) {
    test(`${c.model} at TP ${c.tp} on ${c.gpu}: ${c.file}`, async () => {
      const info = await inspectModel(join(c.dir ?? MODELS, c.model));
      const r = moeTuningFor(info, { name: c.gpu }, c.tp);
      assert.equal(name(r), c.file);
      if (r.kind === "moe") {
        assert.equal(r.tuning.experts, c.E);
        assert.equal(r.tuning.n, c.N);
        assert.equal(r.tuning.dtype, c.dtype);
        assert.equal(r.tuning.benchmarkDtype, c.dtype ?? "auto");
      }
    });
  }

  test("dense models, FP8 or not, have nothing to tune", async () => {
    for (const m of ["llama-3-8b-instruct", "qwen3-8b-fp8", "llama-3.1-70b-instruct-awq-int4"]) {
      assert.deepEqual(moeTuningFor(await inspectModel(join(MODELS, m)), H100, 1), { kind: "dense" }, m);
    }
  });

  test("expert parallelism puts E/TP experts on each GPU with the whole intermediate size", async () => {
    const info = await inspectModel(join(MODELS, "deepseek-v3"));
    assert.equal(
      name(moeTuningFor(info, "NVIDIA H200", 8, { expertParallel: true })),
      "E=32,N=2048,device_name=NVIDIA_H200,dtype=fp8_w8a8,block_shape=[128,128].json",
    );
  });

  test("--quantization experts_int8 or fp8 on a bf16 MoE changes the dtype, without a block shape", async () => {
    const info = await inspectModel(join(MODELS, "mixtral-8x7b-instruct"));
    assert.equal(
      name(moeTuningFor(info, H100, 2, { quantizationOverride: "experts_int8" })),
      "E=8,N=7168,device_name=NVIDIA_H100_80GB_HBM3,dtype=int8_w8a16.json",
    );
    assert.equal(
      name(moeTuningFor(info, H100, 2, { quantizationOverride: "fp8" })),
      "E=8,N=7168,device_name=NVIDIA_H100_80GB_HBM3,dtype=fp8_w8a8.json",
    );
  });

  test("a compressed-tensors FP8 MoE is fp8_w8a8; an AWQ MoE is not something the tuner covers", async () => {
    const info = await inspectModel(join(MODELS, "mixtral-8x7b-instruct"));
    const ct: ModelInfo = {
      ...info,
      quantization: {
        method: "compressed-tensors",
        bits: null,
        groupSize: null,
        weightBlockSize: null,
        source: "x",
      },
    };
    const groups = {
      config_groups: {
        g: { weights: { type: "float", num_bits: 8 }, input_activations: { type: "float", num_bits: 8 } },
      },
    };
    assert.match(name(moeTuningFor(ct, H100, 1, { quantizationConfig: groups })), /,dtype=fp8_w8a8\.json$/);
    const awq: ModelInfo = {
      ...info,
      quantization: { method: "awq", bits: 4, groupSize: 128, weightBlockSize: null, source: "x" },
    };
    const r = moeTuningFor(awq, H100, 1);
    assert.equal(r.kind, "unsupported");
    assert.match(
      r.kind === "unsupported" ? r.reason : "",
      /awq quantization .* benchmark_moe\.py does not tune/,
    );
  });

  test("a TP that does not divide the expert intermediate size is refused, as vLLM refuses it", async () => {
    const info = await inspectModel(join(MODELS, "mixtral-8x7b-instruct"));
    const r = moeTuningFor(info, H100, 3);
    assert.equal(r.kind, "unsupported");
    assert.match(
      r.kind === "unsupported" ? r.reason : "",
      /14336 is not divisible by tensor parallel size 3/,
    );
  });
});

test("device names follow vLLM: NVML name, spaces as underscores, H200 variants as NVIDIA_H200", () => {
  assert.equal(vllmDeviceName("NVIDIA H100 80GB HBM3"), "NVIDIA_H100_80GB_HBM3");
  assert.equal(vllmDeviceName("NVIDIA A100-SXM4-80GB"), "NVIDIA_A100-SXM4-80GB");
  assert.equal(vllmDeviceName("NVIDIA GeForce RTX 4090"), "NVIDIA_GeForce_RTX_4090");
  assert.equal(vllmDeviceName("NVIDIA H200 NVL"), "NVIDIA_H200");
  assert.equal(vllmDeviceName("NVIDIA H200"), "NVIDIA_H200");
  assert.equal(vllmDeviceName("NVIDIA H20"), "NVIDIA_H20");
});

test("the H200 rule splits on _ only, as vLLM's get_config_file_name does", () => {
  const cases: Array<[string, string]> = [
    ["NVIDIA H200-141GB", "NVIDIA_H200-141GB"],
    ["NVIDIA H200_NVL", "NVIDIA_H200"],
    ["NVIDIA h200", "NVIDIA_h200"],
    ["NVIDIA GH200 480GB", "NVIDIA_GH200_480GB"],
  ];
  for (const [nvml, expected] of cases) assert.equal(vllmDeviceName(nvml), expected, nvml);
});

test("tuned configs live in XEROTIER_AGENT_MOE_CONFIG_PATH, by default beside the model cache", () => {
  assert.equal(
    moeConfigFolder({ modelCacheDir: "/c/xerotier/models", moeConfigPath: undefined }),
    "/c/xerotier/moe-configs",
  );
  assert.equal(moeConfigFolder({ modelCacheDir: "/c/xerotier/models", moeConfigPath: "/x" }), "/x");
});

describe("the tuned config file schema", () => {
  const entry = {
    BLOCK_SIZE_M: 16,
    BLOCK_SIZE_N: 32,
    BLOCK_SIZE_K: 64,
    GROUP_SIZE_M: 1,
    num_warps: 4,
    num_stages: 3,
  };
  test("batch sizes to kernel parameters, with the optional triton_version", () => {
    const r = v.safeParse(MoeConfigFileSchema, { triton_version: "3.4.0", "1": entry, "4096": entry });
    assert.ok(r.success);
  });
  test("a non-numeric key, a missing field or an empty file is rejected, naming the fault", () => {
    const bad = v.safeParse(MoeConfigFileSchema, { large: entry, "2": { ...entry, num_warps: undefined } });
    assert.ok(!bad.success);
    const messages = bad.success ? [] : bad.issues.map((i) => i.message);
    assert.ok(
      messages.some((m) => /key "large" is not a batch size/.test(m)),
      messages.join("; "),
    );
    assert.ok(
      messages.some((m) => /batch size 2: num_warps/.test(m)),
      messages.join("; "),
    );
    assert.ok(!v.safeParse(MoeConfigFileSchema, {}).success);
    assert.ok(!v.safeParse(MoeConfigFileSchema, { "1": { ...entry, BLOCK_SIZE_M: 0 } }).success);
  });
});
