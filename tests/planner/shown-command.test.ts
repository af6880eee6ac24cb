/**
 * What `xim plan` shows is what `xim run` executes: for each case the
 * command printed by `xim plan --json` (argv and the environment xim sets)
 * is compared with the argv and environment a real child process (the
 * fake vLLM launcher, tests/fixtures/bin/vllm) records when the engine is
 * started from the same configuration. XEROTIER_AGENT_AUTO_CONFIG=0 keeps
 * every automatic step out, MoE tuning and its folder included, and still
 * shows the flags xim always passes (--gpu-memory-utilization).
 */
import assert from "node:assert/strict";
import { cpSync, existsSync, readFileSync, writeFileSync } from "node:fs";
import { dirname, join } from "node:path";
import { after, describe, test } from "node:test";
import { fileURLToPath } from "node:url";
import { createLaunchEngine, describeLaunch } from "../../src/agent/engine-setup.ts";
import { commands } from "../../src/cli/commands.ts";
import { recordingIo } from "../../src/cli/io.ts";
import { runCli } from "../../src/cli/program.ts";
import { loadConfig } from "../../src/core/config/load.ts";
import { silentLogger } from "../../src/core/log.ts";
import { childEnv, SHOWN_ENGINE_KEY, SHOWN_PORT } from "../../src/engine/vllm-args.ts";
import { MODELS, sandbox } from "./fixtures.ts";

const FAKE_VLLM = fileURLToPath(new URL("../fixtures/bin/vllm", import.meta.url));
/** The fake's `#!/usr/bin/env node` must find this Node (26), not the machine's. */
const NODE_PATH = `${dirname(process.execPath)}:/usr/bin:/bin`;

const box = sandbox();
after(() => box.cleanup());
const root = { version: () => "9.9.9", verboseVersion: async () => "verbose\n", commands };

/** A copy of a fixture model with an (empty) weights file, which the start-up check wants. */
function modelCopy(name: string): string {
  const dir = join(box.root, `model-${name}`);
  if (!existsSync(dir)) {
    cpSync(join(MODELS, name), dir, { recursive: true });
    writeFileSync(join(dir, "model.safetensors"), "");
  }
  return dir;
}

interface Shown {
  args: string[];
  env: Record<string, string>;
}

async function shown(
  env: Record<string, string>,
): Promise<{ command: Shown; plan: { decisions: unknown[] } }> {
  const rec = recordingIo(env, box.root);
  const code = await runCli(["plan", "--json"], rec.io, root);
  assert.equal(code, 0, rec.stderr());
  return JSON.parse(rec.stdout());
}

/** Start the engine as `xim run` does, record what the child got, stop it. */
async function executed(
  env: Record<string, string>,
): Promise<{ argv: string[]; env: Record<string, string> }> {
  const record = join(box.root, `record-${Math.random().toString(36).slice(2)}.jsonl`);
  const runEnv = { ...env, FAKE_VLLM_RECORD: record };
  const loaded = loadConfig({ env: runEnv, cwd: box.root });
  const launch = await describeLaunch(loaded, runEnv);
  assert.ok(launch);
  const { engine, moeTuning } = await createLaunchEngine(launch, loaded.config, {
    logger: silentLogger(),
    env: runEnv,
  });
  assert.equal(moeTuning, undefined, "no tuning was started");
  try {
    await engine.start();
    await engine.waitReady(AbortSignal.timeout(60_000));
  } finally {
    await engine.stop(5000);
  }
  const line = readFileSync(record, "utf8").split("\n").filter(Boolean)[0];
  const got = JSON.parse(line) as { argv: string[]; env: Record<string, string> };
  // The shown env is what xim sets; the rest the child inherits from the node's environment.
  const inherited = childEnv(runEnv);
  const set = Object.fromEntries(Object.entries(got.env).filter(([k, v]) => inherited[k] !== v));
  return { argv: got.argv, env: set };
}

function withPort(args: string[], port: string): string[] {
  const out = [...args];
  out[out.indexOf("--port") + 1] = port;
  return out;
}

const cases: Array<{
  name: string;
  model: string;
  settings: Record<string, string>;
  check?: (s: Shown) => void;
}> = [
  {
    name: "AUTO_CONFIG=0 with nothing explicit: --gpu-memory-utilization 0.9 is passed and shown",
    model: "llama-3-8b-instruct",
    settings: { XEROTIER_AGENT_AUTO_CONFIG: "0" },
    check: (s) => assert.ok(s.args.join(" ").includes("--gpu-memory-utilization 0.9"), s.args.join(" ")),
  },
  {
    name: "AUTO_CONFIG=0 with explicit values and user args",
    model: "llama-3-8b-instruct",
    settings: {
      XEROTIER_AGENT_AUTO_CONFIG: "0",
      XEROTIER_AGENT_TENSOR_PARALLEL_SIZE: "2",
      XEROTIER_AGENT_GPU_MEMORY_UTILIZATION: "0.85",
      XEROTIER_AGENT_MAX_MODEL_LEN: "4096",
      XEROTIER_AGENT_VLLM_ARGS: "--enable-prefix-caching",
    },
  },
  {
    name: "auto-configuration on a model that needs quantizing",
    model: "llama-3-70b-instruct",
    settings: {},
  },
  {
    name: "AUTO_CONFIG=0 on a MoE model: no VLLM_TUNED_CONFIG_FOLDER, no tuning",
    model: "mixtral-8x7b-instruct",
    settings: { XEROTIER_AGENT_AUTO_CONFIG: "0" },
    check: (s) => assert.ok(!("VLLM_TUNED_CONFIG_FOLDER" in s.env), JSON.stringify(s.env)),
  },
];

describe("the shown command is the executed command", { timeout: 120_000 }, () => {
  for (const c of cases) {
    test(c.name, async () => {
      const env = {
        HOME: box.root,
        PATH: box.binWith(["nvidia-smi", "lscpu"]),
        XIM_FIXTURE_GPU: "a40x2-pcie",
        XEROTIER_AGENT_VLLM_PATH: FAKE_VLLM,
        XEROTIER_AGENT_VLLM_ENV: `PATH=${NODE_PATH}`,
        XEROTIER_AGENT_INITIAL_MODEL_PATH: modelCopy(c.model),
        XEROTIER_AGENT_LOG_LEVEL: "error",
        ...c.settings,
      };
      const printed = await shown(env);
      const ran = await executed(env);
      const port = ran.argv[ran.argv.indexOf("--port") + 1];
      assert.notEqual(port, SHOWN_PORT);
      assert.deepEqual(withPort(printed.command.args, port), ran.argv);
      // The engine key is made at each start: the shown command says it is set, not its value.
      assert.equal(printed.command.env.VLLM_API_KEY, SHOWN_ENGINE_KEY);
      assert.match(ran.env.VLLM_API_KEY ?? "", /^[\w-]{40,}$/);
      assert.deepEqual({ ...printed.command.env, VLLM_API_KEY: "" }, { ...ran.env, VLLM_API_KEY: "" });
      c.check?.(printed.command);
    });
  }

  test("AUTO_CONFIG=0 on a MoE model: the plan says tuning is off, and why", async () => {
    const rec = recordingIo(
      {
        HOME: box.root,
        PATH: box.binWith(["nvidia-smi", "lscpu"]),
        XIM_FIXTURE_GPU: "a40x2-pcie",
        XEROTIER_AGENT_AUTO_CONFIG: "0",
      },
      box.root,
    );
    const code = await runCli(["plan", "--model", modelCopy("mixtral-8x7b-instruct")], rec.io, root);
    assert.equal(code, 0, rec.stderr());
    assert.match(
      rec.stdout(),
      /MoE kernel tuning\s+off\s+explicit\s+XEROTIER_AGENT_AUTO_CONFIG=0: no tuning/,
    );
    assert.doesNotMatch(rec.stdout(), /VLLM_TUNED_CONFIG_FOLDER/);
  });
});
