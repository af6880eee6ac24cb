/**
 * Attack: a model's config.json with zero, negative, huge, fractional or
 * non-numeric dimensions. Before the fix these flowed into arithmetic and
 * out as `--max-model-len NaN`, `VLLM_CPU_KVCACHE_SPACE=NaN` or a tuning
 * file named `E=1e+300,...`. Each bad config, run through `xim plan --json`
 * and `xim tune-moe --print-name`, must be refused naming the field, the
 * value and the accepted range, and nothing non-finite may be printed.
 */
import assert from "node:assert/strict";
import { mkdirSync, readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { after, describe, test } from "node:test";
import { commands } from "../../src/cli/commands.ts";
import { recordingIo } from "../../src/cli/io.ts";
import { runCli } from "../../src/cli/program.ts";
import { buildVllmCommand } from "../../src/engine/vllm-args.ts";
import { MODELS, sandbox } from "../planner/fixtures.ts";

const box = sandbox();
after(() => box.cleanup());
const root = { version: () => "9.9.9", verboseVersion: async () => "verbose\n", commands };
const GPU_ENV = { PATH: box.binWith(["nvidia-smi", "lscpu"]), XIM_FIXTURE_GPU: "a40x2-pcie" };
const CPU_ENV = { PATH: box.binWith(["lscpu"]) };

async function xim(argv: string[], env: Record<string, string>) {
  const rec = recordingIo({ HOME: box.root, ...env }, box.root);
  const code = await runCli(argv, rec.io, root);
  return { code, stdout: rec.stdout(), stderr: rec.stderr() };
}

const DENSE = JSON.parse(readFileSync(join(MODELS, "llama-3-8b-instruct", "config.json"), "utf8"));
const MOE = JSON.parse(readFileSync(join(MODELS, "qwen3-30b-a3b", "config.json"), "utf8"));

let n = 0;
function modelDir(config: Record<string, unknown>): string {
  const dir = join(box.root, `bad-${n++}`);
  mkdirSync(dir);
  writeFileSync(join(dir, "config.json"), JSON.stringify(config));
  writeFileSync(join(dir, "model.safetensors"), "");
  return dir;
}

/** Raw JSON text, for values JSON.stringify cannot write (1e999 parses as Infinity). */
function modelDirRaw(text: string): string {
  const dir = join(box.root, `bad-${n++}`);
  mkdirSync(dir);
  writeFileSync(join(dir, "config.json"), text);
  writeFileSync(join(dir, "model.safetensors"), "");
  return dir;
}

interface BadCase {
  name: string;
  dir: () => string;
  /** The field the refusal must name. */
  field: string;
}

const without = (o: Record<string, unknown>, k: string) => {
  const copy = { ...o };
  delete copy[k];
  return copy;
};

const CASES: BadCase[] = [
  { name: "hidden_size 0", dir: () => modelDir({ ...DENSE, hidden_size: 0 }), field: "hidden_size" },
  {
    name: "num_hidden_layers -1",
    dir: () => modelDir({ ...DENSE, num_hidden_layers: -1 }),
    field: "num_hidden_layers",
  },
  { name: "hidden_size 1e300", dir: () => modelDir({ ...DENSE, hidden_size: 1e300 }), field: "hidden_size" },
  {
    name: 'hidden_size as the string "12"',
    dir: () => modelDir({ ...DENSE, hidden_size: "12" }),
    field: "hidden_size",
  },
  {
    name: "hidden_size 1e999 (Infinity)",
    dir: () => modelDirRaw(JSON.stringify(DENSE).replace(/"hidden_size":\d+/, '"hidden_size":1e999')),
    field: "hidden_size",
  },
  {
    name: "num_attention_heads 0 (division by zero)",
    dir: () => modelDir({ ...DENSE, num_attention_heads: 0 }),
    field: "num_attention_heads",
  },
  {
    name: "num_key_value_heads 0",
    dir: () => modelDir({ ...DENSE, num_key_value_heads: 0 }),
    field: "num_key_value_heads",
  },
  { name: "head_dim 1.5", dir: () => modelDir({ ...DENSE, head_dim: 1.5 }), field: "head_dim" },
  {
    name: "max_position_embeddings 0",
    dir: () => modelDir({ ...DENSE, max_position_embeddings: 0 }),
    field: "max_position_embeddings",
  },
  {
    name: "max_position_embeddings 1e300",
    dir: () => modelDir({ ...DENSE, max_position_embeddings: 1e300 }),
    field: "max_position_embeddings",
  },
  {
    name: "a RoPE factor that multiplies the context to 1e300",
    dir: () => modelDir({ ...DENSE, rope_scaling: { rope_type: "dynamic", factor: 1e296 } }),
    field: "rope_scaling.factor",
  },
  {
    name: "a RoPE factor of 0 that shrinks the context to nothing",
    dir: () => modelDir({ ...DENSE, rope_scaling: { rope_type: "dynamic", factor: 0 } }),
    field: "rope_scaling.factor",
  },
  { name: "vocab_size -5", dir: () => modelDir({ ...DENSE, vocab_size: -5 }), field: "vocab_size" },
  {
    name: "missing num_hidden_layers",
    dir: () => modelDir(without(DENSE, "num_hidden_layers")),
    field: "num_hidden_layers",
  },
  { name: "num_experts 1e300", dir: () => modelDir({ ...MOE, num_experts: 1e300 }), field: "num_experts" },
  { name: "num_experts -8", dir: () => modelDir({ ...MOE, num_experts: -8 }), field: "num_experts" },
  {
    name: "moe_intermediate_size 0",
    dir: () => modelDir({ ...MOE, moe_intermediate_size: 0 }),
    field: "moe_intermediate_size",
  },
  {
    name: "num_experts_per_tok 1e300",
    dir: () => modelDir({ ...MOE, num_experts_per_tok: 1e300 }),
    field: "num_experts_per_tok",
  },
];

const NON_FINITE = /NaN|Infinity|\de\+\d/;

function assertRefused(r: { code: number; stdout: string; stderr: string }, field: string): void {
  assert.equal(
    r.code,
    1,
    `exit ${r.code}; stdout: ${r.stdout.slice(0, 300)} stderr: ${r.stderr.slice(0, 300)}`,
  );
  assert.doesNotMatch(r.stdout, NON_FINITE);
  assert.match(r.stderr, new RegExp(`config\\.json field ${field.replace(".", "\\.")} `));
  assert.match(r.stderr, /expected (an integer|a number)/, "the accepted range is named");
}

describe("a model config with impossible dimensions is refused at the boundary", { timeout: 120_000 }, () => {
  for (const c of CASES) {
    test(`xim plan --json refuses ${c.name} on a GPU machine`, async () => {
      assertRefused(await xim(["plan", "--json", "--model", c.dir()], GPU_ENV), c.field);
    });
  }

  test("xim plan --json refuses hidden_size 0 on a CPU-only machine (no VLLM_CPU_KVCACHE_SPACE=NaN)", async () => {
    const r = await xim(["plan", "--json", "--model", modelDir({ ...DENSE, hidden_size: 0 })], CPU_ENV);
    assertRefused(r, "hidden_size");
  });

  for (const c of CASES.filter((x) => /experts|moe_/.test(x.field))) {
    test(`xim tune-moe --print-name refuses ${c.name} instead of naming E=/N= from it`, async () => {
      const r = await xim(
        ["tune-moe", "--print-name", "--gpu-name", "NVIDIA H100 80GB HBM3", "--model", c.dir()],
        GPU_ENV,
      );
      assertRefused(r, c.field);
    });
  }

  test("the values of a real config still plan (the limits leave real models alone)", async () => {
    for (const name of ["llama-3-8b-instruct", "qwen3-30b-a3b", "deepseek-v3", "mixtral-8x7b-instruct"]) {
      const r = await xim(["plan", "--json", "--model", join(MODELS, name)], GPU_ENV);
      assert.equal(r.code, 0, `${name}: ${r.stderr}`);
      assert.doesNotMatch(r.stdout, /NaN|Infinity/);
    }
  });
});

describe("the last guard where the engine command is built", () => {
  const settings = {
    vllmPath: "vllm",
    vllmArgs: [],
    vllmEnv: {},
    gpuMemoryUtilization: 0.9,
    maxModelLen: undefined,
    tensorParallelSize: undefined,
    maxNumSeqs: undefined,
  };
  const launch = {
    model: "/m",
    servedModelName: "m",
    endpoint: { host: "127.0.0.1", port: 8000 },
  };

  for (const [name, plan] of [
    ["--max-model-len NaN", { args: ["--max-model-len", "NaN"], env: {} }],
    ["--max-model-len=Infinity", { args: ["--max-model-len=Infinity"], env: {} }],
    ["VLLM_CPU_KVCACHE_SPACE=NaN", { args: [], env: { VLLM_CPU_KVCACHE_SPACE: "NaN" } }],
    ["a JSON argument with -Infinity", { args: ["--hf-overrides", '{"x":-Infinity}'], env: {} }],
  ] as const) {
    test(`a planned ${name} stops the start instead of reaching vLLM`, () => {
      assert.throws(
        () =>
          buildVllmCommand(settings, { ...launch, plan: { args: [...plan.args], env: { ...plan.env } } }, {}),
        (err: Error & { code?: string }) =>
          err.code === "XIM_PLAN_NOT_FINITE" && /not finite/.test(err.message),
      );
    });
  }

  test("finite numbers and words that merely contain the letters pass", () => {
    const cmd = buildVllmCommand(
      settings,
      {
        ...launch,
        plan: {
          args: ["--max-model-len", "8192", "--served-model-name", "InfinityNaNa"],
          env: { A: "1e-5" },
        },
      },
      {},
    );
    assert.ok(cmd.args.includes("8192"));
  });
});
