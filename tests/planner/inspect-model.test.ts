import assert from "node:assert/strict";
import { mkdirSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { after, describe, test } from "node:test";
import * as v from "valibot";
import { XimError } from "../../src/core/errors.ts";
import { inspectModel, ModelInfoSchema } from "../../src/planner/inspect-model.ts";
import { MODELS, sandbox } from "./fixtures.ts";

const box = sandbox();
after(() => box.cleanup());

async function inspect(name: string) {
  const info = await inspectModel(join(MODELS, name));
  v.parse(ModelInfoSchema, info);
  return info;
}

describe("reading config.json of published models", () => {
  test("Llama-3-8B: dense GQA, BF16, 8k context, bytes from the index", async () => {
    const m = await inspect("llama-3-8b-instruct");
    assert.equal(m.architecture, "LlamaForCausalLM");
    assert.equal(m.numLayers, 32);
    assert.equal(m.hiddenSize, 4096);
    assert.equal(m.numAttentionHeads, 32);
    assert.equal(m.numKvHeads, 8);
    assert.equal(m.headDim, 128);
    assert.equal(m.derivedMaxModelLen, 8192);
    assert.equal(m.dtype, "bfloat16");
    assert.equal(m.moe, null);
    assert.equal(m.mla, null);
    assert.equal(m.mtpLayers, 0);
    assert.equal(m.quantization, null);
    assert.equal(m.weightBytes, 16060522496);
    assert.equal(m.weightBytesSource, "index");
  });

  test("Mixtral-8x7B: 8 local experts, the expert intermediate size is intermediate_size", async () => {
    const m = await inspect("mixtral-8x7b-instruct");
    assert.deepEqual(m.moe, {
      numExperts: 8,
      expertsField: "num_local_experts",
      expertsPerToken: 2,
      intermediateSize: 14336,
      sharedExperts: null,
    });
    assert.equal(m.derivedMaxModelLen, 32768);
  });

  test("DeepSeek-V3: MLA, 256 routed experts, one MTP layer, FP8 with 128x128 blocks, yarn context", async () => {
    const m = await inspect("deepseek-v3");
    assert.deepEqual(m.mla, {
      kvLoraRank: 512,
      qkRopeHeadDim: 64,
      qkNopeHeadDim: 128,
      vHeadDim: 128,
      qLoraRank: 1536,
    });
    assert.deepEqual(m.moe, {
      numExperts: 256,
      expertsField: "n_routed_experts",
      expertsPerToken: 8,
      intermediateSize: 2048,
      sharedExperts: 1,
    });
    assert.equal(m.mtpLayers, 1);
    assert.deepEqual(m.quantization, {
      method: "fp8",
      bits: 8,
      groupSize: null,
      weightBlockSize: [128, 128],
      source: "config.json quantization_config",
    });
    // yarn: original 4096 x factor 40
    assert.equal(m.derivedMaxModelLen, 163840);
  });

  test("Qwen3-30B-A3B: num_experts and moe_intermediate_size", async () => {
    const m = await inspect("qwen3-30b-a3b");
    assert.equal(m.moe?.numExperts, 128);
    assert.equal(m.moe?.expertsField, "num_experts");
    assert.equal(m.moe?.intermediateSize, 768);
    assert.equal(m.headDim, 128);
    assert.equal(m.numKvHeads, 4);
  });

  const quantized: Array<[string, string, number | null, number | null]> = [
    ["llama-3.1-70b-instruct-awq-int4", "awq", 4, 128],
    ["qwen2.5-7b-instruct-gptq-int4", "gptq", 4, 128],
    ["qwen3-8b-fp8", "fp8", 8, null],
    ["llama-3.1-8b-instruct-fp8-compressed-tensors", "compressed-tensors", null, null],
  ];
  for (const [name, method, bits, group] of quantized) {
    test(`${name}: pre-quantized as ${method}`, async () => {
      const m = await inspect(name);
      assert.equal(m.quantization?.method, method);
      assert.equal(m.quantization?.bits, bits);
      assert.equal(m.quantization?.groupSize, group);
    });
  }

  test("Llama-3.1 llama3 RoPE scaling does not multiply the context", async () => {
    const m = await inspect("llama-3.1-70b-instruct-awq-int4");
    assert.equal(m.derivedMaxModelLen, 131072);
    assert.equal(m.dtype, "float16");
  });
});

describe("edge cases of model folders", () => {
  function folder(name: string, config: unknown, files: Record<string, string> = {}): string {
    const dir = join(box.root, name);
    mkdirSync(dir);
    writeFileSync(join(dir, "config.json"), typeof config === "string" ? config : JSON.stringify(config));
    for (const [f, content] of Object.entries(files)) writeFileSync(join(dir, f), content);
    return dir;
  }

  test("dtype (transformers >= 4.56), no KV heads (MHA), bytes from the weight files", async () => {
    const dir = folder(
      "mha",
      {
        architectures: ["GPT2LMHeadModel"],
        n_layer: 12,
        n_embd: 768,
        n_head: 12,
        n_positions: 1024,
        dtype: "float32",
      },
      { "model.safetensors": "x".repeat(1000) },
    );
    const m = await inspectModel(dir);
    assert.equal(m.numKvHeads, 12);
    assert.equal(m.headDim, 64);
    assert.equal(m.dtype, "float32");
    assert.equal(m.derivedMaxModelLen, 1024);
    assert.equal(m.weightBytes, 1000);
    assert.equal(m.weightBytesSource, "files");
  });

  test("a multimodal config is read through text_config", async () => {
    const dir = folder("mm", {
      architectures: ["LlavaForConditionalGeneration"],
      text_config: {
        num_hidden_layers: 32,
        hidden_size: 4096,
        num_attention_heads: 32,
        num_key_value_heads: 8,
        max_position_embeddings: 4096,
      },
    });
    const m = await inspectModel(dir);
    assert.equal(m.architecture, "LlavaForConditionalGeneration");
    assert.equal(m.numKvHeads, 8);
  });

  test("bitsandbytes and compressed_tensors names are normalised", async () => {
    const bnb = folder("bnb", {
      num_hidden_layers: 2,
      hidden_size: 64,
      num_attention_heads: 4,
      quantization_config: { load_in_4bit: true },
    });
    assert.equal((await inspectModel(bnb)).quantization?.method, "bitsandbytes");
    const ct = folder("ct", {
      num_hidden_layers: 2,
      hidden_size: 64,
      num_attention_heads: 4,
      quantization_config: { quant_method: "compressed_tensors" },
    });
    assert.equal((await inspectModel(ct)).quantization?.method, "compressed-tensors");
  });

  test("a missing or broken config.json is an XimError that names the file", async () => {
    await assert.rejects(
      inspectModel(join(box.root, "absent")),
      (err) => err instanceof XimError && err.code === "XIM_MODEL_NOT_FOUND",
    );
    const bad = folder("bad", "{not json");
    await assert.rejects(
      inspectModel(bad),
      (err) =>
        err instanceof XimError && err.code === "XIM_MODEL_INVALID" && err.message.includes("config.json"),
    );
    const shapeless = folder("shapeless", { architectures: ["X"] });
    await assert.rejects(
      inspectModel(shapeless),
      /config\.json field num_hidden_layers is missing; expected an integer/,
    );
  });
});
