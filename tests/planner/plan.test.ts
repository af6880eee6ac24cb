import assert from "node:assert/strict";
import { after, describe, test } from "node:test";
import * as v from "valibot";
import { XimError } from "../../src/core/errors.ts";
import { PlanSchema } from "../../src/planner/plan.ts";
import { sandbox } from "./fixtures.ts";
import { planFor, type Scenario } from "./plan-helpers.ts";

const box = sandbox();
after(() => box.cleanup());

interface Case {
  name: string;
  hw: Scenario;
  model: string;
  settings?: Record<string, string>;
  args: string[];
  env: Record<string, string>;
  maxConcurrent?: number | null;
  /** Decisions that must be there, as "setting=value". */
  decisions?: string[];
}

const H100x8: Scenario = { gpu: "h100x8-nvlink" };
const A40x2: Scenario = { gpu: "a40x2-pcie" };
const NO_GPU: Scenario = { gpu: null, ramGiB: 128 };

const cases: Case[] = [
  {
    name: "Llama-70B on 8x H100 (NVLink): TP 8, no quantization, the model's full context",
    hw: H100x8,
    model: "llama-3-70b-instruct",
    args: ["--tensor-parallel-size", "8", "--max-model-len", "8192", "--gpu-memory-utilization", "0.9"],
    env: {},
    decisions: ["--quantization=none"],
  },
  {
    name: "Llama-70B on 2x A40 (PCIe): TP 2, custom all-reduce off, bitsandbytes to fit",
    hw: A40x2,
    model: "llama-3-70b-instruct",
    args: [
      "--tensor-parallel-size",
      "2",
      "--quantization",
      "bitsandbytes",
      "--max-model-len",
      "8192",
      "--gpu-memory-utilization",
      "0.9",
      "--disable-custom-all-reduce",
    ],
    env: {},
  },
  {
    name: "Mixtral-8x7B on one 48 GB A40 (CUDA_VISIBLE_DEVICES=0): bitsandbytes, full 32k context",
    hw: { gpu: "a40x2-pcie", detectEnv: { CUDA_VISIBLE_DEVICES: "0" } },
    model: "mixtral-8x7b-instruct",
    args: [
      "--tensor-parallel-size",
      "1",
      "--quantization",
      "bitsandbytes",
      "--max-model-len",
      "32768",
      "--gpu-memory-utilization",
      "0.9",
    ],
    env: {},
  },
  {
    name: "Mixtral-8x7B on one 48 GB L40S: fp8 is tried first and does not fit, bitsandbytes does",
    hw: { gpu: "l40s-x1" },
    model: "mixtral-8x7b-instruct",
    args: [
      "--tensor-parallel-size",
      "1",
      "--quantization",
      "bitsandbytes",
      "--max-model-len",
      "32768",
      "--gpu-memory-utilization",
      "0.9",
    ],
    env: {},
  },
  {
    name: "DeepSeek-V3 on 8x H200 with speculative decoding: MTP, no --quantization for the FP8 checkpoint",
    hw: { gpu: "h200x8-nvlink" },
    model: "deepseek-v3",
    settings: { XEROTIER_AGENT_SPECULATIVE_ENABLED: "1" },
    args: [
      "--tensor-parallel-size",
      "8",
      "--max-model-len",
      "163840",
      "--gpu-memory-utilization",
      "0.9",
      "--speculative-config",
      '{"method":"mtp","num_speculative_tokens":1}',
    ],
    env: {},
    decisions: ["speculative method=deepseek_mtp", "--quantization=(not passed)"],
  },
  {
    name: "AWQ checkpoint on 8x H100: no conflicting --quantization",
    hw: H100x8,
    model: "llama-3.1-70b-instruct-awq-int4",
    args: ["--tensor-parallel-size", "8", "--max-model-len", "131072", "--gpu-memory-utilization", "0.9"],
    env: {},
    decisions: ["--quantization=(not passed)"],
  },
  {
    name: "GPTQ checkpoint on 2x A30: no --quantization; TP 2 on A30 disables custom all-reduce",
    hw: { gpu: "a30x2-pcie" },
    model: "qwen2.5-7b-instruct-gptq-int4",
    args: [
      "--tensor-parallel-size",
      "2",
      "--max-model-len",
      "32768",
      "--gpu-memory-utilization",
      "0.9",
      "--disable-custom-all-reduce",
    ],
    env: {},
  },
  {
    name: "Qwen3-30B-A3B-FP8 on 8x H100: TP 2, since 768-wide experts split 4 ways are not whole 128-wide FP8 blocks",
    hw: H100x8,
    model: "qwen3-30b-a3b-fp8",
    args: ["--tensor-parallel-size", "2", "--max-model-len", "40960", "--gpu-memory-utilization", "0.9"],
    env: {},
  },
  {
    name: "Llama-8B on 4x L40: TP 4 and the L40 mitigation",
    hw: { gpu: "l40x4-pcie" },
    model: "llama-3-8b-instruct",
    args: [
      "--tensor-parallel-size",
      "4",
      "--max-model-len",
      "8192",
      "--gpu-memory-utilization",
      "0.9",
      "--disable-custom-all-reduce",
    ],
    env: {},
  },
  {
    name: "an H200 MIG slice (2g.35gb) serves Llama-8B within the slice's memory",
    hw: { gpu: "h200-mig", detectEnv: { CUDA_VISIBLE_DEVICES: "MIG-00000002-0000-0000-0000-000000000002" } },
    model: "llama-3-8b-instruct",
    args: ["--tensor-parallel-size", "1", "--max-model-len", "8192", "--gpu-memory-utilization", "0.9"],
    env: {},
  },
  {
    name: "AUTO_CONFIG=0 on 2x A40: the seed's explicit values only",
    hw: A40x2,
    model: "llama-3-70b-instruct",
    settings: {
      XEROTIER_AGENT_AUTO_CONFIG: "0",
      XEROTIER_AGENT_AUTO_CONFIGURE_GPU: "0",
      XEROTIER_AGENT_AUTO_CUDA_MITIGATION: "0",
      XEROTIER_AGENT_TENSOR_PARALLEL_SIZE: "2",
      XEROTIER_AGENT_GPU_MEMORY_UTILIZATION: "0.85",
      XEROTIER_AGENT_MAX_MODEL_LEN: "8192",
    },
    args: ["--tensor-parallel-size", "2", "--max-model-len", "8192", "--gpu-memory-utilization", "0.85"],
    env: {},
    decisions: ["auto-configuration=off"],
  },
  {
    name: "AUTO_CONFIG=0 with nothing explicit: only xim's default --gpu-memory-utilization, which the engine is always given",
    hw: A40x2,
    model: "llama-3-8b-instruct",
    settings: { XEROTIER_AGENT_AUTO_CONFIG: "0" },
    args: ["--gpu-memory-utilization", "0.9"],
    env: {},
  },
  {
    name: "AUTO_CONFIG=0 without a GPU: no CPU tuning, only XEROTIER_AGENT_VLLM_ENV",
    hw: NO_GPU,
    model: "llama-3-8b-instruct",
    settings: { XEROTIER_AGENT_AUTO_CONFIG: "0", XEROTIER_AGENT_VLLM_ENV: "VLLM_CPU_KVCACHE_SPACE=20" },
    args: [],
    env: { VLLM_CPU_KVCACHE_SPACE: "20" },
    maxConcurrent: 5,
  },
  {
    name: "AUTO_CUDA_MITIGATION=0 on 2x A40: no automatic --disable-custom-all-reduce",
    hw: A40x2,
    model: "llama-3-8b-instruct",
    settings: { XEROTIER_AGENT_AUTO_CUDA_MITIGATION: "0" },
    args: ["--tensor-parallel-size", "2", "--max-model-len", "8192", "--gpu-memory-utilization", "0.9"],
    env: {},
  },
  {
    name: "forced CUDA graph and all-reduce switches on 8x H100",
    hw: H100x8,
    model: "llama-3-8b-instruct",
    settings: {
      XEROTIER_AGENT_VLLM_DISABLE_CUDA_GRAPHS: "1",
      XEROTIER_AGENT_VLLM_DISABLE_CUSTOM_ALL_REDUCE: "true",
    },
    args: [
      "--tensor-parallel-size",
      "8",
      "--max-model-len",
      "8192",
      "--gpu-memory-utilization",
      "0.9",
      "--disable-custom-all-reduce",
      "--enforce-eager",
    ],
    env: {},
  },
  {
    name: "AUTO_CONFIGURE_GPU=0 uses TENSOR_PARALLEL_SIZE",
    hw: H100x8,
    model: "llama-3-8b-instruct",
    settings: {
      XEROTIER_AGENT_AUTO_CONFIGURE_GPU: "0",
      XEROTIER_AGENT_TENSOR_PARALLEL_SIZE: "2",
      XEROTIER_AGENT_MAX_NUM_SEQS: "64",
    },
    args: [
      "--tensor-parallel-size",
      "2",
      "--max-model-len",
      "8192",
      "--gpu-memory-utilization",
      "0.9",
      "--max-num-seqs",
      "64",
    ],
    env: {},
  },
  {
    name: "a forced compatible method on an AWQ checkpoint is passed (awq_marlin)",
    hw: H100x8,
    model: "llama-3.1-70b-instruct-awq-int4",
    settings: { XEROTIER_AGENT_VLLM_QUANTIZATION: "awq_marlin" },
    args: [
      "--tensor-parallel-size",
      "8",
      "--quantization",
      "awq_marlin",
      "--max-model-len",
      "131072",
      "--gpu-memory-utilization",
      "0.9",
    ],
    env: {},
  },
  {
    name: "a forced fp8 on an unquantized model on 8x H100",
    hw: H100x8,
    model: "llama-3-70b-instruct",
    settings: { XEROTIER_AGENT_VLLM_QUANTIZATION: "fp8" },
    args: [
      "--tensor-parallel-size",
      "8",
      "--quantization",
      "fp8",
      "--max-model-len",
      "8192",
      "--gpu-memory-utilization",
      "0.9",
    ],
    env: {},
  },
  {
    name: "explicit MAX_MODEL_LEN wins over the planner's",
    hw: H100x8,
    model: "llama-3.1-70b-instruct-awq-int4",
    settings: { XEROTIER_AGENT_MAX_MODEL_LEN: "16384" },
    args: ["--tensor-parallel-size", "8", "--max-model-len", "16384", "--gpu-memory-utilization", "0.9"],
    env: {},
  },
  {
    name: "Qwen3-30B-A3B (MoE) with a tuned-config folder on 2x A40: TP 2 keeps bf16",
    hw: A40x2,
    model: "qwen3-30b-a3b",
    settings: { XEROTIER_AGENT_MOE_CONFIG_PATH: "/srv/moe-configs" },
    args: [
      "--tensor-parallel-size",
      "2",
      "--max-model-len",
      "40960",
      "--gpu-memory-utilization",
      "0.9",
      "--disable-custom-all-reduce",
    ],
    env: { VLLM_TUNED_CONFIG_FOLDER: "/srv/moe-configs" },
  },
];

describe("plans over fixture hardware and published model configs (argv and environment exactly)", () => {
  for (const c of cases) {
    test(c.name, async () => {
      const plan = await planFor(box, c.hw, c.model, c.settings);
      v.parse(PlanSchema, plan);
      assert.deepEqual(
        plan.args,
        c.args,
        plan.decisions.map((d) => `${d.setting}=${d.value}: ${d.reason}`).join("\n"),
      );
      // Every plan, AUTO_CONFIG=0 included, carries xim's start-up timeout into vLLM's own (engine-ready.test.ts).
      const { VLLM_ENGINE_READY_TIMEOUT_S, ...env } = plan.env;
      assert.equal(VLLM_ENGINE_READY_TIMEOUT_S, "1800");
      assert.deepEqual(env, c.env);
      if (c.maxConcurrent !== undefined) assert.equal(plan.maxConcurrent, c.maxConcurrent);
      for (const d of c.decisions ?? []) {
        assert.ok(
          plan.decisions.some((x) => `${x.setting}=${x.value}` === d),
          `missing decision ${d} in ${JSON.stringify(plan.decisions)}`,
        );
      }
      for (const d of plan.decisions) assert.ok(d.reason.length > 0, `decision ${d.setting} has no reason`);
    });
  }
});

describe("what the reasons and warnings say", () => {
  test("the A40 quantization reason says why fp8 was not chosen", async () => {
    const plan = await planFor(box, A40x2, "llama-3-70b-instruct");
    const q = plan.decisions.find((d) => d.setting === "--quantization");
    assert.match(q?.reason ?? "", /compute capability 8\.6 has no FP8/);
    const ar = plan.decisions.find((d) => d.setting === "--disable-custom-all-reduce");
    assert.match(ar?.reason ?? "", /A40/);
  });

  test("the L40S reason records that fp8 was tried", async () => {
    const plan = await planFor(box, { gpu: "l40s-x1" }, "mixtral-8x7b-instruct");
    const q = plan.decisions.find((d) => d.setting === "--quantization");
    assert.match(q?.reason ?? "", /fp8 would leave 0 KV tokens/);
  });

  test("AUTO_CONFIG=0 with weights that cannot fit warns instead of quantizing", async () => {
    const plan = await planFor(box, A40x2, "llama-3-70b-instruct", {
      XEROTIER_AGENT_AUTO_CONFIG: "0",
      XEROTIER_AGENT_TENSOR_PARALLEL_SIZE: "2",
    });
    assert.ok(!plan.args.includes("--quantization"));
    assert.ok(plan.warnings.some((w) => w.startsWith("the weights do not fit")));
  });

  test("a model too big for every method says so", async () => {
    const plan = await planFor(
      box,
      { gpu: "a30x2-pcie", detectEnv: { CUDA_VISIBLE_DEVICES: "0" } },
      "llama-3-70b-instruct",
    );
    assert.ok(plan.warnings.some((w) => /does not fit these GPUs even with bitsandbytes/.test(w)));
  });

  test("the MIG board warning reaches the plan", async () => {
    const plan = await planFor(box, { gpu: "h200-mig" }, "llama-3-8b-instruct");
    assert.ok(plan.warnings.some((w) => /MIG mode .* whole board's/.test(w)));
  });

  test("TENSOR_PARALLEL_SIZE while AUTO_CONFIGURE_GPU is on is reported as ignored", async () => {
    const plan = await planFor(box, H100x8, "llama-3-8b-instruct", {
      XEROTIER_AGENT_TENSOR_PARALLEL_SIZE: "2",
    });
    assert.equal(plan.tensorParallelSize, 8);
    assert.ok(plan.warnings.some((w) => w.includes("TENSOR_PARALLEL_SIZE=2 is ignored")));
  });

  test("busy GPUs lower the default memory utilization so vLLM's start check passes", async () => {
    const { hardwareFor, configFor } = await import("./plan-helpers.ts");
    const { planEngine, explicitSettings } = await import("../../src/planner/plan.ts");
    const { inspectModel } = await import("../../src/planner/inspect-model.ts");
    const { MODELS } = await import("./fixtures.ts");
    const hardware = await hardwareFor(box, H100x8);
    for (const g of hardware.gpus) g.memoryFreeMiB = 60000;
    const { loaded } = configFor(box, {});
    const model = await inspectModel(`${MODELS}/llama-3-8b-instruct`);
    const plan = planEngine({ hardware, model, config: loaded.config, explicit: explicitSettings(loaded) });
    assert.ok(plan.args.join(" ").includes("--gpu-memory-utilization 0.71"));
    // A value the user chose is kept, with a warning.
    const chosen = configFor(box, { XEROTIER_AGENT_GPU_MEMORY_UTILIZATION: "0.9" });
    const kept = planEngine({
      hardware,
      model,
      config: chosen.loaded.config,
      explicit: explicitSettings(chosen.loaded),
    });
    assert.ok(kept.args.join(" ").includes("--gpu-memory-utilization 0.9"));
    assert.ok(kept.warnings.some((w) => w.includes("refuses to start")));
  });
});

describe("forced quantization is validated", () => {
  const refused: Array<[string, string, string, RegExp]> = [
    [
      "fp8 on an AWQ checkpoint",
      "llama-3.1-70b-instruct-awq-int4",
      "fp8",
      /conflicts with the checkpoint, which is awq-quantized/,
    ],
    ["gptq on an unquantized model", "llama-3-8b-instruct", "gptq", /needs a checkpoint quantized with gptq/],
    [
      "bitsandbytes on the FP8 DeepSeek checkpoint",
      "deepseek-v3",
      "bitsandbytes",
      /conflicts with the checkpoint, which is fp8-quantized/,
    ],
  ];
  for (const [name, model, method, message] of refused) {
    test(`refused: ${name}`, async () => {
      await assert.rejects(
        planFor(box, H100x8, model, { XEROTIER_AGENT_VLLM_QUANTIZATION: method }),
        (err) => err instanceof XimError && err.exitCode === 78 && message.test(err.message),
      );
    });
  }

  test("fp8 on an A30 (compute capability 8.0) is allowed, with the weight-only warning", async () => {
    const plan = await planFor(box, { gpu: "a30x2-pcie" }, "llama-3-8b-instruct", {
      XEROTIER_AGENT_VLLM_QUANTIZATION: "fp8",
    });
    assert.ok(plan.args.includes("fp8"));
    assert.ok(plan.warnings.some((w) => w.includes("W8A16")));
  });

  test("bitsandbytes-fp4 reaches vLLM as bitsandbytes", async () => {
    const plan = await planFor(box, A40x2, "llama-3-8b-instruct", {
      XEROTIER_AGENT_VLLM_QUANTIZATION: "bitsandbytes-fp4",
    });
    const i = plan.args.indexOf("--quantization");
    assert.equal(plan.args[i + 1], "bitsandbytes");
  });
});
