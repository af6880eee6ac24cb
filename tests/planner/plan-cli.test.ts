import assert from "node:assert/strict";
import { join } from "node:path";
import { after, describe, test } from "node:test";
import { commands } from "../../src/cli/commands.ts";
import { recordingIo } from "../../src/cli/io.ts";
import { runCli } from "../../src/cli/program.ts";
import { MODELS, sandbox } from "./fixtures.ts";

const box = sandbox();
after(() => box.cleanup());
const root = { version: () => "9.9.9", verboseVersion: async () => "verbose\n", commands };

async function xim(argv: string[], env: Record<string, string>) {
  const rec = recordingIo({ HOME: box.root, ...env }, box.root);
  const code = await runCli(argv, rec.io, root);
  return { code, stdout: rec.stdout(), stderr: rec.stderr() };
}

const A40 = () => ({ PATH: box.binWith(["nvidia-smi", "lscpu"]), XIM_FIXTURE_GPU: "a40x2-pcie" });

describe("xim plan", () => {
  test("prints the exact vLLM command line, the decisions and the warnings", async () => {
    const r = await xim(["plan", "--model", join(MODELS, "llama-3-70b-instruct")], A40());
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stdout, /^Hardware: 2x NVIDIA A40 \(no NVLink between the GPUs; PCIe paths NODE\)\n/);
    assert.ok(
      r.stdout.includes(
        `  vllm serve ${join(MODELS, "llama-3-70b-instruct")} --host 127.0.0.1 --port PORT --served-model-name llama-3-70b-instruct --tensor-parallel-size 2 --quantization bitsandbytes --max-model-len 8192 --gpu-memory-utilization 0.9 --disable-custom-all-reduce\n`,
      ),
      r.stdout,
    );
    assert.match(r.stdout, /--quantization\s+bitsandbytes\s+auto\s+69\.0 GiB of bfloat16 weights/);
  });

  test("settings are flags: --quantization and --auto-configure-gpu/--tensor-parallel-size change the plan", async () => {
    const r = await xim(
      [
        "plan",
        "--model",
        join(MODELS, "llama-3-8b-instruct"),
        "--auto-configure-gpu",
        "0",
        "--tensor-parallel-size",
        "1",
        "--quantization",
        "fp8",
        "--json",
      ],
      A40(),
    );
    assert.equal(r.code, 0, r.stderr);
    const out = JSON.parse(r.stdout);
    assert.deepEqual(out.plan.args, [
      "--tensor-parallel-size",
      "1",
      "--quantization",
      "fp8",
      "--max-model-len",
      "8192",
      "--gpu-memory-utilization",
      "0.9",
    ]);
    assert.equal(out.model.architecture, "LlamaForCausalLM");
    assert.equal(out.hardware.gpus.length, 2);
  });

  test("--json on a machine without GPUs: the CPU plan", async () => {
    const r = await xim(["plan", "--model", join(MODELS, "llama-3-8b-instruct"), "--json"], {
      PATH: box.binWith(["lscpu"]),
    });
    assert.equal(r.code, 0, r.stderr);
    const { plan } = JSON.parse(r.stdout);
    assert.equal(plan.accelerator, "cpu");
    assert.equal(plan.maxConcurrent, 5);
    assert.equal(plan.env.OMP_PROC_BIND, "TRUE");
    // lscpu's 4 NUMA nodes, SMT off: one rank per node, one list per rank.
    assert.equal(plan.tensorParallelSize, 4);
    assert.equal(plan.env.VLLM_CPU_OMP_THREADS_BIND, "0-14|16-30|32-46|48-62");
  });

  test("the model defaults to XEROTIER_AGENT_INITIAL_MODEL_PATH; without either it is a usage error", async () => {
    const ok = await xim(["plan", "--json"], {
      ...A40(),
      XEROTIER_AGENT_INITIAL_MODEL_PATH: join(MODELS, "qwen3-8b-fp8"),
    });
    assert.equal(ok.code, 0, ok.stderr);
    assert.equal(JSON.parse(ok.stdout).model.quantization.method, "fp8");
    const none = await xim(["plan"], A40());
    assert.equal(none.code, 2);
    assert.match(none.stderr, /needs a model folder/);
  });

  test("a folder without config.json fails with the folder named", async () => {
    const r = await xim(["plan", "--model", box.root], A40());
    assert.equal(r.code, 1);
    assert.match(r.stderr, /no config\.json in the model folder/);
  });

  test("a forced quantization that conflicts with the checkpoint exits 78", async () => {
    const r = await xim(
      ["plan", "--model", join(MODELS, "llama-3.1-70b-instruct-awq-int4"), "--quantization", "fp8"],
      A40(),
    );
    assert.equal(r.code, 78);
    assert.match(r.stderr, /conflicts with the checkpoint, which is awq-quantized/);
  });
});
