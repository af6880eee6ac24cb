/**
 * Attack: any local user calls the engine's loopback port directly, with
 * any `cache_salt`, bypassing the node (its tenant isolation, its credit
 * and its accounting). The engine the node starts must answer /v1 only to
 * the node: a key generated at each engine start, given to the engine in
 * its environment (VLLM_API_KEY, never argv), sent by the node as
 * `Authorization: Bearer`. /health and /metrics stay open, as in vLLM.
 * The engine here is a real child process (`xim engine-sim`) started by
 * the real supervisor; the attacker is a plain HTTP client.
 */
import assert from "node:assert/strict";
import { cpSync, readFileSync, writeFileSync } from "node:fs";
import { request } from "node:http";
import { join } from "node:path";
import { after, describe, test } from "node:test";
import { commands } from "../../src/cli/commands.ts";
import { recordingIo } from "../../src/cli/io.ts";
import { runCli } from "../../src/cli/program.ts";
import { silentLogger } from "../../src/core/log.ts";
import { createEngine, type EngineSettings } from "../../src/engine/create.ts";
import type { Supervisor } from "../../src/engine/supervisor.ts";
import { buildVllmCommand } from "../../src/engine/vllm-args.ts";
import { MODELS, sandbox } from "../planner/fixtures.ts";

const WAIT_MS = 60_000;
const box = sandbox();
const engines: Supervisor[] = [];
after(async () => {
  for (const e of engines) await e.stop(2000);
  box.cleanup();
});

const SIM: EngineSettings = {
  engine: "sim",
  vllmPath: "vllm",
  vllmArgs: [],
  vllmEnv: {},
  gpuMemoryUtilization: 0.9,
  maxModelLen: undefined,
  tensorParallelSize: undefined,
  maxNumSeqs: undefined,
  engineStartupTimeoutSeconds: 60,
  vllmSocketPath: undefined,
};

async function startSim(): Promise<Supervisor> {
  const engine = createEngine(SIM, {
    model: "sim-model",
    servedModelName: "sim-model",
    logger: silentLogger(),
    supervisor: { healthIntervalMs: 50 },
  });
  engines.push(engine);
  await engine.start();
  await engine.waitReady(AbortSignal.timeout(WAIT_MS));
  return engine;
}

function call(
  baseUrl: string,
  method: string,
  path: string,
  headers: Record<string, string> = {},
  body?: unknown,
): Promise<{ status: number; body: string }> {
  return new Promise((resolve, reject) => {
    const data = body === undefined ? undefined : Buffer.from(JSON.stringify(body));
    const req = request(
      new URL(path, baseUrl),
      {
        method,
        agent: false,
        headers: { ...headers, ...(data ? { "content-type": "application/json" } : {}) },
        timeout: WAIT_MS,
      },
      (res) => {
        const parts: Buffer[] = [];
        res.on("data", (c: Buffer) => parts.push(c));
        res.on("end", () => resolve({ status: res.statusCode ?? 0, body: Buffer.concat(parts).toString() }));
      },
    );
    req.on("error", reject);
    req.end(data);
  });
}

const CHAT = {
  model: "sim-model",
  messages: [{ role: "user", content: "hi" }],
  max_tokens: 4,
  cache_salt: "another-tenant's-salt",
};

describe("the engine's loopback port answers only the node", { timeout: 180_000 }, () => {
  test("a local client without the engine key gets 401 on every /v1 path of the engine the node started", async () => {
    const engine = await startSim();
    const url = engine.baseUrl as string;
    for (const [method, path, body] of [
      ["POST", "/v1/chat/completions", CHAT],
      ["POST", "/v1/completions", { model: "sim-model", prompt: "hi", cache_salt: "x" }],
      ["GET", "/v1/models", undefined],
      ["GET", "/v1/nope", undefined],
    ] as const) {
      const r = await call(url, method, path, {}, body);
      assert.equal(r.status, 401, `${method} ${path}`);
      assert.deepEqual(JSON.parse(r.body), { error: "Unauthorized" });
      const guessed = await call(url, method, path, { authorization: "Bearer guess" }, body);
      assert.equal(guessed.status, 401, `${method} ${path} with a wrong key`);
    }
    assert.equal((await call(url, "GET", "/health")).status, 200, "/health stays open, as in vLLM");
    assert.equal((await call(url, "GET", "/metrics")).status, 200, "/metrics stays open, as in vLLM");
  });

  test("the node's own requests carry the key and work", async () => {
    const engine = await startSim();
    const reply = await engine.complete(
      { path: "/v1/chat/completions", body: CHAT },
      AbortSignal.timeout(WAIT_MS),
    );
    assert.equal(reply.status, 200, reply.body.toString());
    let chunks = 0;
    for await (const _ of engine.stream(
      { path: "/v1/chat/completions", body: CHAT },
      AbortSignal.timeout(WAIT_MS),
    ))
      chunks++;
    assert.ok(chunks > 0);
  });

  test("the key is in the engine's environment, not its command line, and is new at each start", async () => {
    const engine = await startSim();
    const pid = engine.status().pid as number;
    const argv = readFileSync(`/proc/${pid}/cmdline`, "utf8").split("\0");
    const env = readFileSync(`/proc/${pid}/environ`, "utf8").split("\0");
    const key = env.find((e) => e.startsWith("VLLM_API_KEY="))?.slice("VLLM_API_KEY=".length);
    assert.ok(key && key.length >= 32, "a long random key in VLLM_API_KEY");
    assert.ok(!argv.some((a) => a.includes(key)), "the key is not on the command line (ps shows argv)");
    assert.ok(!argv.some((a) => a.startsWith("--api-key")));
    const url = engine.baseUrl as string;
    assert.equal((await call(url, "GET", "/v1/models", { authorization: `Bearer ${key}` })).status, 200);

    await engine.stop(2000);
    await engine.start();
    await engine.waitReady(AbortSignal.timeout(WAIT_MS));
    const pid2 = engine.status().pid as number;
    const env2 = readFileSync(`/proc/${pid2}/environ`, "utf8").split("\0");
    const key2 = env2.find((e) => e.startsWith("VLLM_API_KEY="))?.slice("VLLM_API_KEY=".length);
    assert.ok(key2 && key2 !== key, "a fresh key for the new run");
    const stale = await call(engine.baseUrl as string, "GET", "/v1/models", {
      authorization: `Bearer ${key}`,
    });
    assert.equal(stale.status, 401, "the previous run's key no longer opens the engine");
  });

  test("vLLM gets the key as VLLM_API_KEY; a user's --api-key or VLLM_API_KEY cannot replace it", () => {
    const cmd = buildVllmCommand(
      { ...SIM, vllmArgs: ["--api-key", "mine", "--enforce-eager"], vllmEnv: { VLLM_API_KEY: "mine" } },
      {
        model: "/m",
        servedModelName: "m",
        endpoint: { host: "127.0.0.1", port: 8000 },
        apiKey: "node-key-0123456789abcdef0123456789",
      },
      { VLLM_API_KEY: "inherited" },
    );
    assert.equal(cmd.env.VLLM_API_KEY, "node-key-0123456789abcdef0123456789");
    assert.ok(!cmd.args.includes("--api-key") && !cmd.args.includes("mine"), cmd.args.join(" "));
    assert.ok(cmd.args.includes("--enforce-eager"));
    assert.ok(
      cmd.warnings.some((w) => w.includes("--api-key")),
      "the dropped flag is warned about",
    );
    assert.ok(!cmd.warnings.some((w) => w.includes("mine")), "without its value");
  });

  test("xim run --dry-run says that an engine key is set, without showing one", async () => {
    // The fixture holds the model's metadata; the start-up check also wants a weights file.
    const model = join(box.root, "llama-3-8b-instruct");
    cpSync(join(MODELS, "llama-3-8b-instruct"), model, { recursive: true });
    writeFileSync(join(model, "model.safetensors"), "");
    const env = {
      HOME: box.root,
      PATH: box.binWith(["nvidia-smi", "lscpu"]),
      XIM_FIXTURE_GPU: "a40x2-pcie",
    };
    const root = { version: () => "9.9.9", verboseVersion: async () => "v\n", commands };
    for (const json of [false, true]) {
      const rec = recordingIo(env, box.root);
      const code = await runCli(
        ["run", "--dry-run", ...(json ? ["--json"] : []), "--initial-model-path", model],
        rec.io,
        root,
      );
      assert.equal(code, 0, rec.stderr());
      assert.match(rec.stdout(), /VLLM_API_KEY/);
      assert.match(rec.stdout(), /generated at each engine start/);
      assert.doesNotMatch(rec.stdout(), /VLLM_API_KEY=[A-Za-z0-9_-]{16,}/, "no key value is printed");
    }
  });
});
