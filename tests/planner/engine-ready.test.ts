/**
 * vLLM's API server gives its engine processes VLLM_ENGINE_READY_TIMEOUT_S
 * (default 600 s) to come up and then exits (vllm PR #35616). The plan
 * passes xim's own start-up timeout there, so a big model is not cut at
 * 600 s behind XEROTIER_AGENT_ENGINE_STARTUP_TIMEOUT_SECONDS' back, unless
 * the user set the variable.
 */
import assert from "node:assert/strict";
import { cpSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { after, describe, test } from "node:test";
import { commands } from "../../src/cli/commands.ts";
import { recordingIo } from "../../src/cli/io.ts";
import { runCli } from "../../src/cli/program.ts";
import { MODELS, sandbox } from "./fixtures.ts";
import { planFor } from "./plan-helpers.ts";

const box = sandbox();
after(() => box.cleanup());
const A40 = { gpu: "a40x2-pcie" };

interface Case {
  name: string;
  settings: Record<string, string>;
  agentEnv?: Record<string, string>;
  value: string | undefined;
  source: string;
  reason: RegExp;
}

const cases: Case[] = [
  {
    name: "the default start-up timeout (1800 s) becomes vLLM's engine-ready timeout",
    settings: {},
    value: "1800",
    source: "default",
    reason: /XEROTIER_AGENT_ENGINE_STARTUP_TIMEOUT_SECONDS: vLLM's own wait .* \(default 600 s\)/,
  },
  {
    name: "a chosen start-up timeout is passed as chosen, with AUTO_CONFIG=0 too",
    settings: { XEROTIER_AGENT_ENGINE_STARTUP_TIMEOUT_SECONDS: "5400", XEROTIER_AGENT_AUTO_CONFIG: "0" },
    value: "5400",
    source: "explicit",
    reason: /XEROTIER_AGENT_ENGINE_STARTUP_TIMEOUT_SECONDS/,
  },
  {
    name: "a value in XEROTIER_AGENT_VLLM_ENV is the user's and stays",
    settings: { XEROTIER_AGENT_VLLM_ENV: "VLLM_ENGINE_READY_TIMEOUT_S=7200" },
    value: "7200",
    source: "explicit",
    reason: /^XEROTIER_AGENT_VLLM_ENV$/,
  },
  {
    name: "a value inherited from the agent's environment is not overridden",
    settings: {},
    agentEnv: { VLLM_ENGINE_READY_TIMEOUT_S: "900" },
    value: undefined,
    source: "explicit",
    reason: /inherited from the agent's environment/,
  },
];

describe("VLLM_ENGINE_READY_TIMEOUT_S follows xim's start-up timeout", () => {
  for (const c of cases) {
    test(c.name, async () => {
      const plan = await planFor(box, A40, "llama-3-8b-instruct", c.settings, {
        env: { HOME: box.root, ...c.agentEnv },
      });
      assert.equal(plan.env.VLLM_ENGINE_READY_TIMEOUT_S, c.value);
      const d = plan.decisions.filter((x) => x.setting === "VLLM_ENGINE_READY_TIMEOUT_S");
      assert.equal(d.length, 1, JSON.stringify(d));
      assert.equal(d[0].source, c.source);
      assert.match(d[0].reason, c.reason);
    });
  }

  test("`xim run --dry-run` shows it with its reason", async () => {
    // The fixture holds the model's metadata; the start-up check also wants a weights file.
    const model = join(box.root, "llama-3-8b-instruct");
    cpSync(join(MODELS, "llama-3-8b-instruct"), model, { recursive: true });
    writeFileSync(join(model, "model.safetensors"), "");
    const rec = recordingIo(
      { HOME: box.root, PATH: box.binWith(["nvidia-smi", "lscpu"]), XIM_FIXTURE_GPU: "a40x2-pcie" },
      box.root,
    );
    const code = await runCli(["run", "--dry-run", "--initial-model-path", model], rec.io, {
      version: () => "9.9.9",
      verboseVersion: async () => "v\n",
      commands,
    });
    assert.equal(code, 0, rec.stderr());
    assert.match(rec.stdout(), /VLLM_ENGINE_READY_TIMEOUT_S=1800/);
    assert.match(
      rec.stdout(),
      /VLLM_ENGINE_READY_TIMEOUT_S\s+1800\s+default\s+XEROTIER_AGENT_ENGINE_STARTUP_TIMEOUT_SECONDS/,
    );
  });
});
