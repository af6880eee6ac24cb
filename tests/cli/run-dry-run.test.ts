/**
 * `xim run --dry-run`: what the node would start, without starting it:
 * the planner's vLLM command for a model on this (fixture) hardware, or
 * the simulated engine; a missing model folder is refused at start-up.
 */
import assert from "node:assert/strict";
import { cpSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { after, describe, test } from "node:test";
import { commands } from "../../src/cli/commands.ts";
import { recordingIo } from "../../src/cli/io.ts";
import { runCli } from "../../src/cli/program.ts";
import { MODELS, sandbox } from "../planner/fixtures.ts";

const box = sandbox();
after(() => box.cleanup());
const root = { version: () => "9.9.9", verboseVersion: async () => "verbose\n", commands };

async function xim(argv: string[], env: Record<string, string>) {
  const rec = recordingIo({ HOME: box.root, ...env }, box.root);
  const code = await runCli(argv, rec.io, root);
  return { code, stdout: rec.stdout(), stderr: rec.stderr() };
}

const A40 = { PATH: box.binWith(["nvidia-smi", "lscpu"]), XIM_FIXTURE_GPU: "a40x2-pcie" };

describe("xim run --dry-run", () => {
  test("prints the planned vLLM command for the initial model and starts nothing", async () => {
    // The fixture holds the model's metadata; a start-up check also wants a weights file.
    const model = join(box.root, "llama-3-8b-instruct");
    cpSync(join(MODELS, "llama-3-8b-instruct"), model, { recursive: true });
    writeFileSync(join(model, "model.safetensors"), "");
    const r = await xim(["run", "--dry-run", "--initial-model-path", model], A40);
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stdout, new RegExp(`vllm serve ${model} `));
    assert.match(r.stdout, /served as llama-3-8b-instruct/);
    const j = await xim(["run", "--dry-run", "--json", "--initial-model-path", model], A40);
    assert.equal(j.code, 0, j.stderr);
    const out = JSON.parse(j.stdout);
    assert.equal(out.engine, "vllm");
    assert.ok(Array.isArray(out.plan.args));
    assert.equal(out.maxConcurrent, 256, "vLLM's default --max-num-seqs on a 48 GB A40");
  });

  test("the simulated engine, and no model at all", async () => {
    const sim = await xim(["run", "--dry-run"], { ...A40, XEROTIER_AGENT_ENGINE: "sim" });
    assert.match(sim.stdout, /Engine: simulated .* served as xim-sim\nMax concurrent requests: 5\n/);
    const none = await xim(["run", "--dry-run"], A40);
    assert.equal(none.code, 0);
    assert.match(none.stdout, /Nothing to serve yet/);
  });

  test("a missing initial model folder is refused", async () => {
    const r = await xim(["run", "--dry-run", "--initial-model-path", join(box.root, "nope")], A40);
    assert.notEqual(r.code, 0);
    assert.match(r.stderr, /nope/);
  });
});
