/**
 * The --quantization methods come from the installed vLLM (asked of its
 * Python once per plan), with xim's built-in list as the fallback; the
 * compute-capability table warns, since vLLM decides itself
 * (research/vllm-contract-2026-12.md M4). The installed vLLM is the
 * python3 test double (tests/fixtures/bin/python3) over stub packages of
 * vLLM v0.11 and of the latest main (tests/fixtures/vllm-python/).
 */
import assert from "node:assert/strict";
import { join } from "node:path";
import { after, describe, test } from "node:test";
import { commands } from "../../src/cli/commands.ts";
import { recordingIo } from "../../src/cli/io.ts";
import { runCli } from "../../src/cli/program.ts";
import { XimError } from "../../src/core/errors.ts";
import type { Hardware } from "../../src/hardware/types.ts";
import { inspectModel } from "../../src/planner/inspect-model.ts";
import { planEngine } from "../../src/planner/plan.ts";
import {
  type InstalledQuantization,
  probeQuantizationMethods,
} from "../../src/planner/probes/vllm-quantization.ts";
import { MODELS, sandbox } from "./fixtures.ts";
import { configFor, hardwareFor } from "./plan-helpers.ts";

const box = sandbox();
after(() => box.cleanup());

describe("asking the installed vLLM for its quantization methods", () => {
  const cases: Array<{
    name: string;
    fixture: string | null;
    timeoutMs?: number;
    expect: RegExp | string[];
  }> = [
    {
      name: "vLLM v0.11: its 28 methods, hqq among them",
      fixture: "v0.11",
      expect: ["hqq", "rtn", "gptq_marlin_24"],
    },
    { name: "latest vLLM: fp8_per_tensor is there", fixture: "latest", expect: ["fp8_per_tensor", "online"] },
    {
      name: "python3 without vLLM is unknown, with the import error",
      fixture: "none",
      expect: /cannot import vLLM's quantization registry \(ModuleNotFoundError: No module named 'vllm'\)/,
    },
    {
      name: "a Python that does not answer in time is unknown",
      fixture: "hang",
      timeoutMs: 1000,
      expect: /did not answer in 1 s/,
    },
    {
      name: "an answer that is not a clean list of names is unknown",
      fixture: "noisy",
      expect: /printed no list/,
    },
    { name: "no python3 at all is unknown", fixture: null, expect: /python3 not found/ },
  ];
  for (const c of cases) {
    // The timeout case waits 1 s for the kill; 30 s leaves room for a loaded 2-core CI machine to start python.
    test(c.name, { timeout: 30_000 }, async () => {
      const env = c.fixture
        ? { PATH: box.binWith(["python3"]), XIM_FIXTURE_VLLM: c.fixture }
        : { PATH: box.binWith([]) };
      const r = await probeQuantizationMethods({ vllmPath: "vllm", env, timeoutMs: c.timeoutMs ?? 20_000 });
      if (Array.isArray(c.expect)) {
        assert.equal(r.kind, "installed", JSON.stringify(r));
        if (r.kind === "installed") for (const m of c.expect) assert.ok(r.methods.includes(m), m);
        if (r.kind === "installed" && c.fixture === "latest") assert.ok(!r.methods.includes("hqq"));
      } else {
        assert.equal(r.kind, "unknown");
        if (r.kind === "unknown") assert.match(r.reason, c.expect);
      }
    });
  }
});

const v011: InstalledQuantization = {
  kind: "installed",
  python: "/venv/bin/python3",
  methods: ["awq", "fp8", "gptq", "gptq_marlin", "awq_marlin", "bitsandbytes", "hqq", "compressed-tensors"],
};
const latest: InstalledQuantization = {
  kind: "installed",
  python: "/venv/bin/python3",
  methods: [
    "awq",
    "fp8",
    "gptq",
    "gptq_marlin",
    "awq_marlin",
    "bitsandbytes",
    "fp8_per_tensor",
    "compressed-tensors",
  ],
};
const withoutBnb: InstalledQuantization = {
  kind: "installed",
  python: "/venv/bin/python3",
  methods: ["awq", "fp8"],
};
const unknown: InstalledQuantization = { kind: "unknown", reason: "python3 not found" };

/** The fixture GPU with another compute capability (no fixture captures a Turing or Volta board). */
function withCapability(hw: Hardware, cc: string): Hardware {
  return { ...hw, gpus: hw.gpus.map((g) => ({ ...g, computeCapability: cc })) };
}

describe("the plan checks quantization against the installed vLLM's list", () => {
  interface Case {
    name: string;
    gpu: string;
    cc?: string;
    model: string;
    method?: string;
    installed: InstalledQuantization | undefined;
    /** The --quantization passed, or the error's code and message. */
    expect: string | null | { code: string; message: RegExp };
    list?: string;
    warning?: RegExp;
  }
  const cases: Case[] = [
    {
      name: "a method the installed vLLM lacks is refused, with its list",
      gpu: "h100x8-nvlink",
      model: "llama-3-8b-instruct",
      method: "fp8_per_tensor",
      installed: v011,
      expect: {
        code: "XIM_PLAN_QUANTIZATION_UNKNOWN",
        message:
          /fp8_per_tensor is not a quantization method of the installed vLLM \(\/venv\/bin\/python3 lists: awq, fp8/,
      },
    },
    {
      name: "the same method on a vLLM that has it is passed",
      gpu: "h100x8-nvlink",
      model: "llama-3-8b-instruct",
      method: "fp8_per_tensor",
      installed: latest,
      expect: "fp8_per_tensor",
      list: "installed vLLM (8)",
    },
    {
      name: "vLLM not importable: xim's built-in list, and the plan says so",
      gpu: "h100x8-nvlink",
      model: "llama-3-8b-instruct",
      method: "fp8_per_tensor",
      installed: unknown,
      expect: "fp8_per_tensor",
      list: "xim's built-in list",
    },
    {
      name: "on-the-fly: bitsandbytes is not chosen when the installed vLLM has removed it",
      gpu: "a40x2-pcie",
      model: "llama-3-70b-instruct",
      installed: withoutBnb,
      expect: null,
      list: "installed vLLM (2)",
      warning: /no on-the-fly quantization applies/,
    },
    {
      name: "on-the-fly: bitsandbytes where the installed vLLM has it",
      gpu: "a40x2-pcie",
      model: "llama-3-70b-instruct",
      installed: latest,
      expect: "bitsandbytes",
    },
    {
      name: "fp8 on compute capability 7.5 (Turing) is passed: current vLLM runs FP8 Marlin there",
      gpu: "a40x2-pcie",
      cc: "7.5",
      model: "llama-3-8b-instruct",
      method: "fp8",
      installed: latest,
      expect: "fp8",
      warning: /W8A16/,
    },
    {
      name: "awq_marlin below its capability (7.0) warns instead of refusing: vLLM decides",
      gpu: "a40x2-pcie",
      cc: "7.0",
      model: "llama-3.1-70b-instruct-awq-int4",
      method: "awq_marlin",
      installed: latest,
      expect: "awq_marlin",
      warning:
        /needs compute capability 7\.5 or newer in current vLLM; NVIDIA A40 has 7\.0: the installed vLLM decides/,
    },
  ];
  for (const c of cases) {
    test(c.name, async () => {
      const base = await hardwareFor(box, { gpu: c.gpu });
      const hardware = c.cc ? withCapability(base, c.cc) : base;
      const { loaded, env } = configFor(box, c.method ? { XEROTIER_AGENT_VLLM_QUANTIZATION: c.method } : {});
      const model = await inspectModel(join(MODELS, c.model));
      const plan = () =>
        planEngine({ hardware, model, config: loaded.config, env, quantizationMethods: c.installed });
      if (c.expect !== null && typeof c.expect === "object") {
        const want = c.expect;
        assert.throws(
          plan,
          (err) =>
            err instanceof XimError &&
            err.code === want.code &&
            err.exitCode === 78 &&
            want.message.test(err.message),
        );
        return;
      }
      const p = plan();
      const i = p.args.indexOf("--quantization");
      assert.equal(i === -1 ? null : p.args[i + 1], c.expect);
      if (c.list) assert.equal(p.decisions.find((d) => d.setting === "quantization methods")?.value, c.list);
      if (c.warning)
        assert.ok(
          p.warnings.some((w) => c.warning?.test(w)),
          p.warnings.join("\n"),
        );
    });
  }
});

describe("`xim plan` asks the vLLM it would run", () => {
  const root = { version: () => "9.9.9", verboseVersion: async () => "v\n", commands };
  async function plan(fixture: string) {
    const rec = recordingIo(
      {
        HOME: box.root,
        PATH: box.binWith(["nvidia-smi", "lscpu", "python3"]),
        XIM_FIXTURE_GPU: "h100x8-nvlink",
        XIM_FIXTURE_VLLM: fixture,
      },
      box.root,
    );
    const argv = ["plan", "--model", join(MODELS, "llama-3-8b-instruct"), "--quantization", "hqq", "--json"];
    const code = await runCli(argv, rec.io, root);
    return { code, stdout: rec.stdout(), stderr: rec.stderr() };
  }

  test("hqq, in the built-in list, is refused where the installed vLLM (latest) no longer has it", {
    timeout: 60_000,
  }, async () => {
    const r = await plan("latest");
    assert.equal(r.code, 78);
    assert.match(r.stderr, /hqq is not a quantization method of the installed vLLM/);
  });

  test("on vLLM v0.11, which has hqq, the checkpoint rule decides instead", { timeout: 60_000 }, async () => {
    const r = await plan("v0.11");
    assert.equal(r.code, 78);
    assert.match(r.stderr, /hqq needs a checkpoint quantized with hqq/);
  });
});
