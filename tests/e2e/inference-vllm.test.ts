/**
 * `xim run` on the vLLM path with real processes: the planner's command
 * for a model on fixture hardware (2x A40 from the nvidia-smi test
 * double), the supervisor starting `XEROTIER_AGENT_VLLM_PATH` (the vllm
 * test double, which serves through this checkout's engine-sim), and a
 * completion streamed through the router with the tenant's cache salt.
 */
import assert from "node:assert/strict";
import { cpSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { after, before, describe, test } from "node:test";
import { loopbackServeArgs } from "../../scripts/lib/loopback-router.ts";
import { BIN, MODELS, sandbox } from "../planner/fixtures.ts";
import { baseEnv, waitFor, XimProcess, xim } from "../router/harness.ts";

const home = mkdtempSync(join(tmpdir(), "xim-e2e-vllm-"));
const box = sandbox();
const stateDir = join(home, "router");
const env = baseEnv(home);

describe("xim run with the planned vLLM engine", { timeout: 90_000 }, () => {
  let router: XimProcess;
  let node: XimProcess | undefined;
  let httpUrl: string;

  before(async () => {
    assert.equal((await xim(["router", "init", "--state", stateDir], env)).code, 0);
    router = new XimProcess(loopbackServeArgs(stateDir), env);
    httpUrl = JSON.parse(await router.line((l) => l.startsWith("{"), 20_000)).httpUrl;
  });

  after(async () => {
    await node?.stop();
    await router?.stop();
    box.cleanup();
    rmSync(home, { recursive: true, force: true });
  });

  test("the planner's vLLM command runs under supervision and serves a stream through the router", async () => {
    const model = join(home, "llama-3-8b-instruct");
    cpSync(join(MODELS, "llama-3-8b-instruct"), model, { recursive: true });
    writeFileSync(join(model, "model.safetensors"), "");
    const record = join(home, "vllm-record.jsonl");
    const path = `${box.binWith(["nvidia-smi", "lscpu"])}:${dirname(process.execPath)}:${process.env.PATH}`;
    const joinKey = JSON.parse(
      (await xim(["router", "join-key", "create", "--state", stateDir, "--json"], env)).stdout,
    ).key;
    const apiKey = JSON.parse(
      (await xim(["router", "api-key", "create", "--state", stateDir, "--tenant", "acme", "--json"], env))
        .stdout,
    ).key;
    node = new XimProcess(["run"], {
      ...env,
      PATH: path,
      XIM_FIXTURE_GPU: "a40x2-pcie",
      XEROTIER_AGENT_JOIN_KEY: joinKey,
      XEROTIER_AGENT_CONFIG_DIR: join(home, "node"),
      XEROTIER_AGENT_VLLM_PATH: join(BIN, "vllm"),
      XEROTIER_AGENT_INITIAL_MODEL_PATH: model,
      XEROTIER_AGENT_VLLM_ENV: `PATH=${path} FAKE_VLLM_RECORD=${record} FAKE_VLLM_LOAD_TIME_MS=300 FAKE_VLLM_OUTPUT_TOKENS=12`,
      XEROTIER_AGENT_VLLM_SALT_SECRET: "e2e-secret",
      XEROTIER_AGENT_DISABLE_METRICS_SERVER: "1",
      XEROTIER_AGENT_LEASE_RENEWAL_INTERVAL_MS: "200",
      XEROTIER_AGENT_LEASE_DURATION_MS: "2000",
    });
    const auth = { authorization: `Bearer ${apiKey}`, "content-type": "application/json" };
    const current = node;
    await waitFor(
      async () => {
        const res = await fetch(`${httpUrl}/v1/models`, { headers: auth }).catch(() => undefined);
        return (
          res?.ok &&
          ((await res.json()) as { data: { id: string }[] }).data.some((m) => m.id === "llama-3-8b-instruct")
        );
      },
      { timeoutMs: 45_000, what: "the vLLM node to be ready", stopIf: () => current.child.exitCode !== null },
    );
    const started = JSON.parse(readFileSync(record, "utf8").trim().split("\n")[0]);
    const argv: string[] = started.argv;
    assert.equal(argv[0], "serve");
    assert.equal(argv[1], model);
    assert.ok(argv.includes("--tensor-parallel-size"), argv.join(" "));
    assert.equal(argv[argv.indexOf("--served-model-name") + 1], "llama-3-8b-instruct");

    const res = await fetch(`${httpUrl}/v1/chat/completions`, {
      method: "POST",
      headers: auth,
      body: JSON.stringify({
        model: "llama-3-8b-instruct",
        stream: true,
        messages: [{ role: "user", content: "hi" }],
      }),
    });
    assert.equal(res.status, 200);
    const text = await res.text();
    assert.ok(text.endsWith("data: [DONE]\n\n"));
    assert.equal((text.match(/"content":" ?\w+"/g) ?? []).length, 12);

    const nodes = JSON.parse(
      (await xim(["router", "nodes", "--state", stateDir, "--json"], env)).stdout,
    ).nodes;
    assert.equal(nodes[0].maxConcurrent, 256, "vLLM's default --max-num-seqs on an A40");
    const stop = await current.stop(20_000);
    assert.equal(stop.code, 0, stop.stderr.slice(-2000));
  });
});
