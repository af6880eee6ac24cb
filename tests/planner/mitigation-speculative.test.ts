import assert from "node:assert/strict";
import { after, describe, test } from "node:test";
import { XimError } from "../../src/core/errors.ts";
import { nextMitigation } from "../../src/planner/cuda-mitigation.ts";
import { sandbox } from "./fixtures.ts";
import { planFor } from "./plan-helpers.ts";

const box = sandbox();
after(() => box.cleanup());

describe("the CUDA graph mitigation ladder applied at restart", () => {
  test("2x A40: custom all-reduce is off from the start, then NCCL P2P off, then eager, then nothing left", async () => {
    const first = await planFor(box, { gpu: "a40x2-pcie" }, "llama-3-8b-instruct");
    assert.deepEqual(first.mitigation, { enabled: true, applied: ["disable-custom-all-reduce"] });
    const second = nextMitigation(first, "a CUDA graph capture failure");
    assert.ok(second);
    assert.equal(second.env.NCCL_P2P_DISABLE, "1");
    assert.deepEqual(second.args, first.args);
    assert.ok(
      second.decisions.some(
        (d) => d.setting === "NCCL_P2P_DISABLE" && /CUDA graph capture failure/.test(d.reason),
      ),
    );
    const third = nextMitigation(second, "a CUDA graph capture failure");
    assert.ok(third);
    assert.deepEqual(third.args, [...first.args, "--enforce-eager"]);
    assert.deepEqual(third.mitigation.applied, [
      "disable-custom-all-reduce",
      "nccl-p2p-disable",
      "enforce-eager",
    ]);
    assert.equal(nextMitigation(third, "a CUDA graph capture failure"), null);
    // The earlier plans are not modified.
    assert.equal(first.env.NCCL_P2P_DISABLE, undefined);
  });

  test("8x H100 (NVLink) starts without mitigations and escalates from the first rung", async () => {
    const plan = await planFor(box, { gpu: "h100x8-nvlink" }, "llama-3-8b-instruct", {
      XEROTIER_AGENT_SPECULATIVE_ENABLED: "1",
    });
    assert.deepEqual(plan.mitigation.applied, []);
    const next = nextMitigation(plan, "a hang at CUDA graph capture");
    assert.ok(next);
    // The flag goes before the JSON configs so argv stays in the planner's order.
    const i = next.args.indexOf("--disable-custom-all-reduce");
    assert.ok(i >= 0 && i < next.args.indexOf("--speculative-config"));
  });

  test("one GPU goes straight to --enforce-eager", async () => {
    const plan = await planFor(box, { gpu: "l40s-x1" }, "llama-3-8b-instruct");
    const next = nextMitigation(plan, "a CUDA graph capture failure");
    assert.deepEqual(next?.mitigation.applied, ["enforce-eager"]);
    assert.equal(next?.args.at(-1), "--enforce-eager");
    assert.equal(next && nextMitigation(next, "again"), null);
  });

  test("AUTO_CUDA_MITIGATION=0 or AUTO_CONFIG=0: no escalation", async () => {
    const variants: Record<string, string>[] = [
      { XEROTIER_AGENT_AUTO_CUDA_MITIGATION: "0" },
      { XEROTIER_AGENT_AUTO_CONFIG: "0" },
    ];
    for (const settings of variants) {
      const plan = await planFor(box, { gpu: "a40x2-pcie" }, "llama-3-8b-instruct", settings);
      assert.equal(nextMitigation(plan, "a CUDA graph capture failure"), null);
    }
  });

  test("the CPU has no CUDA graphs to mitigate", async () => {
    const plan = await planFor(box, { gpu: null }, "llama-3-8b-instruct");
    assert.equal(nextMitigation(plan, "anything"), null);
  });
});

function specOf(args: string[]): unknown {
  const i = args.indexOf("--speculative-config");
  return i < 0 ? null : JSON.parse(args[i + 1]);
}

describe("speculative decoding", () => {
  const H100 = { gpu: "h100x8-nvlink" };
  const on = { XEROTIER_AGENT_SPECULATIVE_ENABLED: "1" };

  test("off by default, even for a model with MTP layers", async () => {
    const plan = await planFor(box, { gpu: "h200x8-nvlink" }, "deepseek-v3");
    assert.equal(specOf(plan.args), null);
  });

  test("auto: ngram for a model without MTP and without a draft", async () => {
    const plan = await planFor(box, H100, "llama-3-8b-instruct", on);
    assert.deepEqual(specOf(plan.args), {
      method: "ngram",
      num_speculative_tokens: 5,
      prompt_lookup_max: 4,
      prompt_lookup_min: 2,
    });
  });

  test("the seed's n-gram example: method ngram, 3 tokens", async () => {
    const plan = await planFor(box, H100, "llama-3-8b-instruct", {
      ...on,
      XEROTIER_AGENT_SPECULATIVE_METHOD: "ngram",
      XEROTIER_AGENT_SPECULATIVE_TOKENS: "3",
      XEROTIER_AGENT_SPECULATIVE_NGRAM_FALLBACK: "1",
    });
    assert.deepEqual(specOf(plan.args), {
      method: "ngram",
      num_speculative_tokens: 3,
      prompt_lookup_max: 4,
      prompt_lookup_min: 2,
    });
  });

  test("auto: eagle when a draft model is set", async () => {
    const plan = await planFor(box, H100, "llama-3-8b-instruct", {
      ...on,
      XEROTIER_AGENT_SPECULATIVE_DRAFT_MODEL_PATH: "/models/EAGLE-LLaMA3-Instruct-8B",
    });
    assert.deepEqual(specOf(plan.args), {
      method: "eagle",
      model: "/models/EAGLE-LLaMA3-Instruct-8B",
      num_speculative_tokens: 2,
      draft_tensor_parallel_size: 1,
    });
  });

  test("forced deepseek_mtp with 2 tokens on DeepSeek-V3 (a multiple of its 1 MTP layer)", async () => {
    const plan = await planFor(box, { gpu: "h200x8-nvlink" }, "deepseek-v3", {
      ...on,
      XEROTIER_AGENT_SPECULATIVE_METHOD: "deepseek_mtp",
      XEROTIER_AGENT_SPECULATIVE_TOKENS: "2",
    });
    assert.deepEqual(specOf(plan.args), { method: "mtp", num_speculative_tokens: 2 });
    assert.ok(
      plan.decisions.some(
        (d) => d.setting === "speculative method" && d.value === "deepseek_mtp" && d.source === "explicit",
      ),
    );
  });

  test("MTP on a model without MTP layers: an error, or n-gram with the fallback on", async () => {
    const settings = { ...on, XEROTIER_AGENT_SPECULATIVE_METHOD: "deepseek_mtp" };
    await assert.rejects(
      planFor(box, H100, "llama-3-8b-instruct", settings),
      (err) =>
        err instanceof XimError && err.code === "XIM_PLAN_SPECULATIVE_UNAVAILABLE" && err.exitCode === 78,
    );
    const plan = await planFor(box, H100, "llama-3-8b-instruct", {
      ...settings,
      XEROTIER_AGENT_SPECULATIVE_NGRAM_FALLBACK: "1",
    });
    assert.equal((specOf(plan.args) as { method: string }).method, "ngram");
    assert.ok(plan.warnings.some((w) => w.includes("falling back to ngram")));
  });

  test("medusa needs its token count", async () => {
    const settings = {
      ...on,
      XEROTIER_AGENT_SPECULATIVE_METHOD: "medusa",
      XEROTIER_AGENT_SPECULATIVE_DRAFT_MODEL_PATH: "/models/medusa",
    };
    await assert.rejects(planFor(box, H100, "llama-3-8b-instruct", settings), /Medusa heads/);
    const plan = await planFor(box, H100, "llama-3-8b-instruct", {
      ...settings,
      XEROTIER_AGENT_SPECULATIVE_TOKENS: "3",
    });
    assert.deepEqual(specOf(plan.args), {
      method: "medusa",
      model: "/models/medusa",
      num_speculative_tokens: 3,
    });
  });

  test("eagle without a draft model is refused by the configuration itself", async () => {
    await assert.rejects(
      planFor(box, H100, "llama-3-8b-instruct", { ...on, XEROTIER_AGENT_SPECULATIVE_METHOD: "eagle" }),
      /draft model/,
    );
  });

  test("AUTO_CONFIG=0 without a method leaves speculation off and says so", async () => {
    const plan = await planFor(box, { gpu: "h200x8-nvlink" }, "deepseek-v3", {
      ...on,
      XEROTIER_AGENT_AUTO_CONFIG: "0",
    });
    assert.equal(specOf(plan.args), null);
    assert.ok(plan.warnings.some((w) => w.includes("no XEROTIER_AGENT_SPECULATIVE_METHOD")));
  });
});
