/**
 * Fallbacks the Xerotier documentation promises, at plan time and after a
 * failed start: XEROTIER_AGENT_SPECULATIVE_NGRAM_FALLBACK turns an
 * unavailable speculative method (no draft model, a draft model path that
 * does not exist, a method vLLM refuses at start) into n-gram, and LMCache
 * failing inside vLLM restarts the engine without it. The restarts run the
 * fake vLLM launcher (tests/fixtures/bin/vllm) as a real child process that
 * fails its first start with vLLM's own message and records every argv.
 */
import assert from "node:assert/strict";
import { cpSync, readFileSync, writeFileSync } from "node:fs";
import { dirname, join } from "node:path";
import { Writable } from "node:stream";
import { after, describe, test } from "node:test";
import { fileURLToPath } from "node:url";
import { createLaunchEngine, describeLaunch } from "../../src/agent/engine-setup.ts";
import { loadConfig } from "../../src/core/config/load.ts";
import { XimError } from "../../src/core/errors.ts";
import { createLogger } from "../../src/core/log.ts";
import { fallbackAfterFailure } from "../../src/planner/fallback.ts";
import { checkDraftModel, type Plan } from "../../src/planner/plan.ts";
import { MODELS, sandbox } from "../planner/fixtures.ts";
import { planFor } from "../planner/plan-helpers.ts";

const FAKE_VLLM = fileURLToPath(new URL("../fixtures/bin/vllm", import.meta.url));
const NODE_PATH = `${dirname(process.execPath)}:/usr/bin:/bin`;
const box = sandbox();
after(() => box.cleanup());

const H100 = { gpu: "h100x8-nvlink" };
const spec = (plan: Plan) => {
  const i = plan.args.indexOf("--speculative-config");
  return i === -1 ? null : (JSON.parse(plan.args[i + 1]) as Record<string, unknown>);
};

describe("n-gram fallback when the primary speculative method has no usable draft model", () => {
  const on = { XEROTIER_AGENT_SPECULATIVE_ENABLED: "1", XEROTIER_AGENT_SPECULATIVE_NGRAM_FALLBACK: "1" };
  const cases: Array<{ name: string; settings: Record<string, string>; draftPath?: string; why: RegExp }> = [
    {
      name: "eagle without a draft model",
      settings: { ...on, XEROTIER_AGENT_SPECULATIVE_METHOD: "eagle" },
      why: /eagle needs a draft model and no draft model is set/,
    },
    {
      name: "medusa with a draft model path that does not exist",
      settings: {
        ...on,
        XEROTIER_AGENT_SPECULATIVE_METHOD: "medusa",
        XEROTIER_AGENT_SPECULATIVE_TOKENS: "3",
      },
      draftPath: "/nonexistent/medusa-heads",
      why: /medusa needs a draft model and XEROTIER_AGENT_SPECULATIVE_DRAFT_MODEL_PATH=\/nonexistent\/medusa-heads does not exist/,
    },
    {
      name: "eagle chosen automatically for a draft model path that does not exist",
      settings: on,
      draftPath: "/nonexistent/EAGLE-LLaMA3-Instruct-8B",
      why: /eagle needs a draft model and .* does not exist/,
    },
  ];
  for (const c of cases) {
    test(`${c.name}: n-gram, and the plan says why`, async () => {
      const settings = c.draftPath
        ? { ...c.settings, XEROTIER_AGENT_SPECULATIVE_DRAFT_MODEL_PATH: c.draftPath }
        : c.settings;
      const plan = await planFor(box, H100, "llama-3-8b-instruct", settings, {
        draftModelProblem: await checkDraftModel(c.draftPath),
      });
      assert.equal(spec(plan)?.method, "ngram");
      const decision = plan.decisions.find((d) => d.setting === "speculative method");
      assert.equal(decision?.value, "ngram");
      assert.match(decision?.reason ?? "", c.why);
      assert.ok(plan.warnings.some((w) => c.why.test(w) && w.includes("falling back to ngram")));
    });
  }

  test("without the fallback a missing draft model path is a configuration error naming it", async () => {
    const settings = {
      XEROTIER_AGENT_SPECULATIVE_ENABLED: "1",
      XEROTIER_AGENT_SPECULATIVE_METHOD: "eagle",
      XEROTIER_AGENT_SPECULATIVE_DRAFT_MODEL_PATH: "/nonexistent/eagle",
    };
    await assert.rejects(
      planFor(box, H100, "llama-3-8b-instruct", settings, {
        draftModelProblem: await checkDraftModel("/nonexistent/eagle"),
      }),
      (err) =>
        err instanceof XimError &&
        err.code === "XIM_PLAN_SPECULATIVE_DRAFT_MISSING" &&
        err.exitCode === 78 &&
        err.message.includes("/nonexistent/eagle does not exist"),
    );
  });

  test("a Hugging Face id is left to vLLM; an existing folder is fine", async () => {
    assert.equal(await checkDraftModel("yuhuili/EAGLE-LLaMA3-Instruct-8B"), undefined);
    assert.equal(await checkDraftModel(box.root), undefined);
  });
});

describe("which failures change the next start", () => {
  test("table: cause x plan x setting -> fallback", async () => {
    const eagle = await planFor(box, H100, "llama-3-8b-instruct", {
      XEROTIER_AGENT_SPECULATIVE_ENABLED: "1",
      XEROTIER_AGENT_SPECULATIVE_METHOD: "eagle3",
      XEROTIER_AGENT_SPECULATIVE_DRAFT_MODEL_PATH: "yuhuili/EAGLE3-LLaMA3.1-Instruct-8B",
    });
    const ngram = await planFor(box, H100, "llama-3-8b-instruct", {
      XEROTIER_AGENT_SPECULATIVE_ENABLED: "1",
    });
    const lmcache = await planFor(box, H100, "llama-3-8b-instruct", { XEROTIER_AGENT_LMCACHE_ENABLED: "1" });
    const fallbackOn = { speculativeNgramFallback: true, speculativeTokens: undefined };
    const fallbackOff = { speculativeNgramFallback: false, speculativeTokens: undefined };
    const rows: Array<[string, Plan, string, typeof fallbackOn, "ngram" | "no-lmcache" | null]> = [
      ["eagle3 refused, fallback on", eagle, "speculative-unsupported-model", fallbackOn, "ngram"],
      ["suffix package missing, fallback on", eagle, "speculative-package-missing", fallbackOn, "ngram"],
      ["eagle3 refused, fallback off", eagle, "speculative-unsupported-model", fallbackOff, null],
      ["already n-gram", ngram, "speculative-unsupported-model", fallbackOn, null],
      ["out of memory", eagle, "out-of-memory", fallbackOn, null],
      ["LMCache failed", lmcache, "lmcache-failed", fallbackOff, "no-lmcache"],
      ["LMCache failed, but the plan has none", eagle, "lmcache-failed", fallbackOn, null],
    ];
    for (const [name, plan, cause, config, want] of rows) {
      const f = fallbackAfterFailure(plan, { cause: cause as never, summary: "s" }, config);
      if (want === null) {
        assert.equal(f, undefined, name);
        continue;
      }
      assert.ok(f, name);
      if (want === "ngram") {
        assert.equal(spec(f.plan)?.method, "ngram", name);
        assert.match(f.note, /restarting with n-gram/);
        assert.equal(
          fallbackAfterFailure(f.plan, { cause: cause as never, summary: "s" }, config),
          undefined,
        );
      } else {
        assert.ok(!f.plan.args.includes("--kv-transfer-config"), name);
        assert.equal(f.plan.env.LMCACHE_CONFIG_FILE, undefined, name);
        assert.match(f.note, /restarting without LMCache/);
      }
    }
  });
});

/** A copy of a fixture model with an (empty) weights file, which the start-up check wants. */
function modelCopy(name: string): string {
  const dir = join(box.root, `model-${name}`);
  cpSync(join(MODELS, name), dir, { recursive: true });
  writeFileSync(join(dir, "model.safetensors"), "");
  return dir;
}

/** Start the engine as `xim run` does with the fake vLLM failing its first start as `kind`; the argv of each start and the log. */
async function restartAfter(kind: string, settings: Record<string, string>) {
  const record = join(box.root, `record-${kind}.jsonl`);
  const env = {
    HOME: box.root,
    PATH: box.binWith(["nvidia-smi", "lscpu"]),
    XIM_FIXTURE_GPU: "h100x8-nvlink",
    XEROTIER_AGENT_VLLM_PATH: FAKE_VLLM,
    XEROTIER_AGENT_VLLM_ENV: `PATH=${NODE_PATH} FAKE_VLLM_FAIL_AT_START=${kind} FAKE_VLLM_FAIL_TIMES=1 FAKE_VLLM_RECORD=${record}`,
    XEROTIER_AGENT_INITIAL_MODEL_PATH: modelCopy("llama-3-8b-instruct"),
    XEROTIER_AGENT_CONFIG_DIR: join(box.root, `config-${kind}`),
    XEROTIER_AGENT_MOE_CONFIG_ENABLED: "0",
    ...settings,
  };
  const loaded = loadConfig({ env, cwd: box.root });
  const launch = await describeLaunch(loaded, env);
  assert.ok(launch);
  const lines: string[] = [];
  const logger = createLogger({
    level: "info",
    pretty: false,
    destination: new Writable({
      write(chunk, _enc, done) {
        lines.push(...String(chunk).split("\n").filter(Boolean));
        done();
      },
    }),
  });
  const launched = await createLaunchEngine(launch, loaded.config, { logger, env });
  const restarts: number[] = [];
  launched.engine.on("restart", (r) => restarts.push(r.restarts));
  try {
    await launched.engine.start();
    await launched.engine.waitReady(AbortSignal.timeout(90_000));
  } finally {
    await launched.engine.stop(5000);
  }
  const runs = readFileSync(record, "utf8")
    .split("\n")
    .filter(Boolean)
    .map((l) => JSON.parse(l) as { argv: string[]; env: Record<string, string> });
  return { runs, lines, note: launched.fallbackAt(restarts[0]) };
}

describe("restarts after vLLM refused part of the plan (real child processes)", { timeout: 180_000 }, () => {
  test("EAGLE-3 refused by vLLM: one restart with n-gram, logged and kept for the router's report", async () => {
    const { runs, lines, note } = await restartAfter("speculative-unsupported-model", {
      XEROTIER_AGENT_SPECULATIVE_ENABLED: "1",
      XEROTIER_AGENT_SPECULATIVE_METHOD: "eagle3",
      XEROTIER_AGENT_SPECULATIVE_DRAFT_MODEL_PATH: "yuhuili/EAGLE3-LLaMA3.1-Instruct-8B",
      XEROTIER_AGENT_SPECULATIVE_NGRAM_FALLBACK: "1",
    });
    assert.equal(runs.length, 2, "one failed start, one restart");
    const specOf = (argv: string[]) => JSON.parse(argv[argv.indexOf("--speculative-config") + 1]);
    assert.equal(specOf(runs[0].argv).method, "eagle3");
    assert.equal(specOf(runs[1].argv).method, "ngram");
    assert.match(note ?? "", /vLLM refused speculative method eagle3 .*restarting with n-gram/);
    assert.ok(lines.some((l) => l.includes("restarting with n-gram")));
  });

  test("LMCache failing inside vLLM: one restart without LMCache, logged and kept for the router's report", async () => {
    const { runs, lines, note } = await restartAfter("lmcache-failed", {
      XEROTIER_AGENT_LMCACHE_ENABLED: "1",
    });
    assert.equal(runs.length, 2, "one failed start, one restart");
    assert.ok(runs[0].argv.includes("--kv-transfer-config"));
    assert.ok(runs[0].env.LMCACHE_CONFIG_FILE);
    assert.ok(!runs[1].argv.includes("--kv-transfer-config"));
    assert.equal(runs[1].env.LMCACHE_CONFIG_FILE, undefined);
    assert.match(note ?? "", /LMCache failed inside vLLM .*restarting without LMCache/);
    assert.ok(lines.some((l) => l.includes("restarting without LMCache")));
  });
});
