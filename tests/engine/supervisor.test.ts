import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { once } from "node:events";
import { existsSync, mkdtempSync, readFileSync, rmSync } from "node:fs";
import { createServer } from "node:net";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { Writable } from "node:stream";
import { after, describe, test } from "node:test";
import { fileURLToPath } from "node:url";
import { createLogger, silentLogger } from "../../src/core/log.ts";
import { type CreateEngineOptions, createEngine, type EngineSettings } from "../../src/engine/create.ts";
import type { EngineStatus } from "../../src/engine/engine.ts";
import { ssePayloads } from "../../src/engine/sse.ts";
import type { Supervisor } from "../../src/engine/supervisor.ts";
import { collect, runEngineConformance, until, WAIT_MS } from "./engine.case.ts";

const FAKE_VLLM = fileURLToPath(new URL("../fixtures/bin/vllm", import.meta.url));
/** The fake's `#!/usr/bin/env node` must find this Node (26), not the machine's. */
const PATH = `${dirname(process.execPath)}:${process.env.PATH ?? ""}`;

const dir = mkdtempSync(join(tmpdir(), "xim-supervisor-"));
const engines: Supervisor[] = [];
after(async () => {
  for (const e of engines) await e.stop(1000);
  rmSync(dir, { recursive: true, force: true });
});

let records = 0;
function recordFile(): string {
  return join(dir, `record-${++records}.jsonl`);
}

interface Recorded {
  argv: string[];
  env: Record<string, string>;
  pid: number;
}

function recorded(file: string): Recorded[] {
  if (!existsSync(file)) return [];
  return readFileSync(file, "utf8")
    .split("\n")
    .filter(Boolean)
    .map((l) => JSON.parse(l) as Recorded);
}

function settings(over: Partial<EngineSettings> = {}, env: Record<string, string> = {}): EngineSettings {
  return {
    engine: "vllm",
    vllmPath: FAKE_VLLM,
    vllmArgs: [],
    vllmEnv: { PATH, ...env },
    gpuMemoryUtilization: 0.9,
    maxModelLen: undefined,
    tensorParallelSize: undefined,
    maxNumSeqs: undefined,
    engineStartupTimeoutSeconds: 60,
    ...over,
  };
}

/** The backoff delays the supervisor announces before each restart. */
function restartDelays(e: Supervisor): number[] {
  const delays: number[] = [];
  e.on("restart", (r) => delays.push(r.delayMs));
  return delays;
}

function engine(s: EngineSettings, options: Partial<CreateEngineOptions> = {}): Supervisor {
  const e = createEngine(s, {
    model: "/models/demo",
    servedModelName: "demo",
    logger: silentLogger(),
    ...options,
    supervisor: {
      healthIntervalMs: 50,
      backoff: { baseMs: 50, maxMs: 1000, jitter: "none" },
      ...options.supervisor,
    },
  });
  engines.push(e);
  return e;
}

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

runEngineConformance({
  name: "vLLM supervisor running tests/fixtures/bin/vllm as XEROTIER_AGENT_VLLM_PATH",
  create: (model, t) =>
    engine(
      settings(
        {},
        {
          FAKE_VLLM_LOAD_TIME_MS: String(t.loadTimeMs),
          FAKE_VLLM_TTFT_MS: String(t.ttftMs),
          FAKE_VLLM_ITL_MS: String(t.itlMs),
          FAKE_VLLM_OUTPUT_TOKENS: String(t.outputTokens),
        },
      ),
      { model: `/models/${model}`, servedModelName: model },
    ),
});

runEngineConformance({
  name: "XEROTIER_AGENT_ENGINE=sim: the supervisor running `xim engine-sim` as a child",
  create: (model, t) =>
    engine(settings({ engine: "sim" }), { model: `/models/${model}`, servedModelName: model, sim: t }),
});

describe("engine supervision", { timeout: 120_000 }, () => {
  test("vLLM is started as `serve <model>` with the settings, the plan and the user's args in that order, and a filtered environment", async () => {
    const record = recordFile();
    const lines: string[] = [];
    const logger = createLogger({
      level: "debug",
      pretty: false,
      destination: new Writable({
        write(chunk, _enc, done) {
          lines.push(...String(chunk).split("\n").filter(Boolean));
          done();
        },
      }),
    });
    const e = engine(
      settings(
        {
          gpuMemoryUtilization: 0.85,
          maxModelLen: 8192,
          tensorParallelSize: 1,
          vllmArgs: ["--enforce-eager", "--port", "9999"],
        },
        { FAKE_VLLM_RECORD: record, HF_HOME: "/data/hf" },
      ),
      {
        logger,
        plan: {
          args: ["--max-model-len", "4096", "--kv-cache-dtype", "fp8"],
          env: { VLLM_FROM_PLAN: "1", HF_HOME: "/planner" },
        },
        env: {
          PATH,
          KEEP_ME: "yes",
          XEROTIER_AGENT_JOIN_KEY: "xjk_must_not_leak",
          XEROTIER_AGENT_VLLM_SALT_SECRET: "s",
        },
      },
    );
    await e.start();
    await e.waitReady(AbortSignal.timeout(WAIT_MS));
    const port = new URL(e.baseUrl ?? "").port;
    const [run] = recorded(record);
    assert.deepEqual(run.argv, [
      "serve",
      "/models/demo",
      "--host",
      "127.0.0.1",
      "--port",
      port,
      "--served-model-name",
      "demo",
      "--max-model-len",
      "4096",
      "--kv-cache-dtype",
      "fp8",
      "--gpu-memory-utilization",
      "0.85",
      "--tensor-parallel-size",
      "1",
      "--enforce-eager",
    ]);
    assert.equal(run.env.KEEP_ME, "yes");
    assert.equal(run.env.VLLM_FROM_PLAN, "1");
    assert.equal(run.env.HF_HOME, "/data/hf", "XEROTIER_AGENT_VLLM_ENV wins over the plan");
    assert.deepEqual(
      Object.keys(run.env).filter((k) => k.startsWith("XEROTIER_AGENT_")),
      [],
      "the node's settings (join key, salt secret) stay out of the engine's environment",
    );
    const logged = lines.map((l) => JSON.parse(l) as { level: string; msg: string; stream?: string });
    assert.ok(logged.some((l) => l.level === "warn" && l.msg.includes("ignored '--port 9999'")));
    assert.ok(
      logged.some(
        (l) =>
          l.level === "debug" && l.stream === "stderr" && l.msg === "INFO:     Application startup complete.",
      ),
      "the engine's output reaches the log at debug level",
    );
    assert.ok(e.lastLines().includes("INFO:     Application startup complete."));
    await e.stop(5000);
  });

  test("a crashed engine is restarted after a backoff and gets ready again; the crash is reported with exit code and lines", async () => {
    const record = recordFile();
    const e = engine(settings({}, { FAKE_VLLM_RECORD: record, FAKE_VLLM_EXIT_AFTER_MS: "300" }), {
      supervisor: { backoff: { baseMs: 100, maxMs: 1000, jitter: "none" } },
    });
    const delays = restartDelays(e);
    const seen: EngineStatus[] = [];
    e.on("state", (s) => seen.push(s));
    await e.start();
    await until(e, (s) => s.state === "ready");
    const crashed = await until(e, (s) => s.state === "loading" && s.lastFailure !== undefined);
    assert.equal(crashed.lastFailure?.exitCode, 1);
    assert.ok(crashed.lastFailure?.lastLines.some((l) => l.includes("simulated crash")));
    await until(e, (s) => s.state === "ready" && s.restarts === 1);
    await e.stop(5000);
    assert.equal(recorded(record).length >= 2, true);
    assert.equal(delays[0], 100, "the attempt count restarts after a run that got ready");
    assert.deepEqual(seen.map((s) => s.state).slice(0, 4), ["loading", "ready", "loading", "ready"]);
  });

  test("a ready engine whose /health turns 503 is killed and restarted (liveness checks only after ready)", async () => {
    const record = recordFile();
    const e = engine(settings({}, { FAKE_VLLM_RECORD: record, FAKE_VLLM_UNHEALTHY_AFTER_MS: "200" }), {
      supervisor: { livenessIntervalMs: 100, livenessFailures: 2, killGraceMs: 5000 },
    });
    await e.start();
    await until(e, (s) => s.state === "ready");
    const restarted = await until(e, (s) => s.state === "loading" && s.lastFailure !== undefined);
    assert.match(
      restarted.lastFailure?.evidence ?? "",
      /stopped answering GET \/health \(2 checks in a row\)/,
    );
    assert.equal(restarted.lastFailure?.exitCode, 0, "it was stopped with SIGTERM and shut down cleanly");
    await until(e, (s) => s.state === "ready" && s.restarts === 1);
    assert.equal(recorded(record).length, 2);
    await e.stop(5000);
  });

  test("an engine that fails to start twice and then loads is ready, after backoffs of 50 and 100 ms", async () => {
    const record = recordFile();
    const e = engine(
      settings({}, { FAKE_VLLM_RECORD: record, FAKE_VLLM_FAIL_AT_START: "oom", FAKE_VLLM_FAIL_TIMES: "2" }),
    );
    const delays = restartDelays(e);
    await e.start();
    await e.waitReady(AbortSignal.timeout(WAIT_MS));
    assert.equal(e.status().restarts, 2);
    assert.equal(e.status().lastFailure?.cause, "out-of-memory");
    assert.deepEqual(delays, [50, 100]);
    assert.equal(recorded(record).length, 3);
    await e.stop(5000);
  });

  test("repeated out-of-memory failures leave the engine failed with the cause, not crash-looping", async () => {
    const record = recordFile();
    const e = engine(settings({}, { FAKE_VLLM_RECORD: record, FAKE_VLLM_FAIL_AT_START: "oom" }), {
      supervisor: { maxFailures: 3 },
    });
    const delays = restartDelays(e);
    await e.start();
    await assert.rejects(e.waitReady(AbortSignal.timeout(WAIT_MS)), /the engine failed: out of memory/);
    const status = e.status();
    assert.equal(status.state, "failed");
    assert.equal(status.restarts, 2);
    assert.equal(status.lastFailure?.cause, "out-of-memory");
    assert.equal(status.lastFailure?.exitCode, 1);
    assert.match(status.lastFailure?.evidence ?? "", /torch\.OutOfMemoryError: CUDA out of memory/);
    assert.match(status.lastFailure?.hint ?? "", /XEROTIER_AGENT_GPU_MEMORY_UTILIZATION/);
    assert.ok(status.lastFailure?.lastLines.some((l) => l.startsWith("CRITICAL 03-13 09:00:43")));
    assert.deepEqual(delays, [50, 100]);
    assert.equal(recorded(record).length, 3, "three starts, then it stays failed");
    await new Promise((r) => setTimeout(r, 300));
    assert.equal(recorded(record).length, 3, "no further start");
  });

  for (const [kind, cause] of [
    ["cuda-graph", "cuda-graph-capture"],
    ["model-not-found", "model-not-found"],
    ["port-in-use", "port-in-use"],
    ["max-model-len", "max-model-len"],
  ] as const) {
    test(`a start that fails with vLLM's ${kind} message is classified as ${cause}`, async () => {
      const e = engine(settings({}, { FAKE_VLLM_FAIL_AT_START: kind }), { supervisor: { maxFailures: 1 } });
      await e.start();
      const status = await until(e, (s) => s.state === "failed");
      assert.equal(status.lastFailure?.cause, cause);
      assert.equal(status.restarts, 0);
    });
  }

  test("an engine stuck in CUDA graph capture past the start-up timeout is killed (SIGKILL when it ignores SIGTERM) and classified", async () => {
    const e = engine(settings({ engineStartupTimeoutSeconds: 1 }, { FAKE_VLLM_HANG: "1" }), {
      supervisor: { maxFailures: 1, killGraceMs: 300 },
    });
    await e.start();
    const status = await until(e, (s) => s.state === "failed");
    assert.equal(status.lastFailure?.cause, "cuda-graph-capture");
    assert.equal(status.lastFailure?.signal, "SIGKILL");
    assert.ok(status.lastFailure?.lastLines.includes("ignoring SIGTERM"), "SIGTERM came first");
  });

  test("an engine still loading at the start-up timeout fails as a start-up timeout; /health was polled, not killed, until then", async () => {
    const record = recordFile();
    const e = engine(
      settings(
        { engineStartupTimeoutSeconds: 1 },
        { FAKE_VLLM_RECORD: record, FAKE_VLLM_LOAD_TIME_MS: "600000" },
      ),
      { supervisor: { maxFailures: 1 } },
    );
    await e.start();
    const status = await until(e, (s) => s.state === "failed");
    assert.equal(status.lastFailure?.cause, "startup-timeout");
    assert.match(status.lastFailure?.hint ?? "", /XEROTIER_AGENT_ENGINE_STARTUP_TIMEOUT_SECONDS/);
    assert.equal(recorded(record).length, 1);
  });

  test("with XEROTIER_AGENT_VLLM_SOCKET_PATH the engine serves on that Unix socket (--uds)", async () => {
    const record = recordFile();
    const socketPath = join(dir, "engine.sock");
    const e = engine(settings({ vllmSocketPath: socketPath }, { FAKE_VLLM_RECORD: record }));
    await e.start();
    await e.waitReady(AbortSignal.timeout(WAIT_MS));
    assert.equal(e.baseUrl, `unix:${socketPath}`);
    assert.deepEqual(recorded(record)[0].argv.slice(0, 4), ["serve", "/models/demo", "--uds", socketPath]);
    const payloads = await collect(
      ssePayloads(e.stream({ path: "/v1/completions", body: { model: "demo", prompt: "x", max_tokens: 2 } })),
    );
    assert.equal(payloads.length, 3);
    await e.stop(5000);
  });

  test("a socket path another process still serves on is a port-in-use failure, not a shared socket", async () => {
    const socketPath = join(dir, "busy.sock");
    const squatter = createServer().listen(socketPath);
    await once(squatter, "listening");
    try {
      const e = engine(settings({ vllmSocketPath: socketPath }), { supervisor: { maxFailures: 1 } });
      await e.start();
      const status = await until(e, (s) => s.state === "failed");
      assert.equal(status.lastFailure?.cause, "port-in-use");
      assert.match(status.lastFailure?.evidence ?? "", /already serves on/);
    } finally {
      squatter.close();
    }
  });

  test("a missing vLLM executable fails at once as engine-not-installed", async () => {
    const e = engine(settings({ vllmPath: join(dir, "no-such-vllm") }));
    await e.start();
    const status = await until(e, (s) => s.state === "failed");
    assert.equal(status.lastFailure?.cause, "engine-not-installed");
    assert.equal(status.restarts, 0);
  });

  test("starting a failed engine again tries from a clean slate", async () => {
    const record = recordFile();
    const e = engine(
      settings({}, { FAKE_VLLM_RECORD: record, FAKE_VLLM_FAIL_AT_START: "oom", FAKE_VLLM_FAIL_TIMES: "1" }),
      { supervisor: { maxFailures: 1 } },
    );
    await e.start();
    await until(e, (s) => s.state === "failed");
    await e.start();
    await e.waitReady(AbortSignal.timeout(WAIT_MS));
    assert.equal(e.status().lastFailure, undefined);
    assert.equal(recorded(record).length, 2);
    await e.stop(5000);
  });

  test("stop(grace) ends a ready engine with SIGTERM, before the grace runs out", async () => {
    const record = recordFile();
    const e = engine(settings({}, { FAKE_VLLM_RECORD: record }));
    await e.start();
    await e.waitReady(AbortSignal.timeout(WAIT_MS));
    const pid = e.status().pid;
    assert.ok(pid);
    await e.stop(60_000);
    assert.equal(e.state, "stopped");
    assert.equal(alive(pid), false);
  });

  test("stop(grace) SIGKILLs an engine that ignores SIGTERM once the grace is over", async () => {
    const record = recordFile();
    const e = engine(settings({}, { FAKE_VLLM_RECORD: record, FAKE_VLLM_HANG: "1" }));
    await e.start();
    const deadline = Date.now() + WAIT_MS;
    while (recorded(record).length === 0 && Date.now() < deadline)
      await new Promise((r) => setTimeout(r, 25));
    const pid = recorded(record)[0].pid;
    const started = Date.now();
    await e.stop(300);
    assert.ok(Date.now() - started >= 290, "SIGKILL only after the grace");
    assert.equal(e.state, "stopped");
    assert.equal(alive(pid), false);
  });

  test("when the node process exits without stopping the engine, the engine is killed with it", async () => {
    const record = recordFile();
    const create = fileURLToPath(new URL("../../src/engine/create.ts", import.meta.url));
    const log = fileURLToPath(new URL("../../src/core/log.ts", import.meta.url));
    const script = `
      import { createEngine } from ${JSON.stringify(create)};
      import { silentLogger } from ${JSON.stringify(log)};
      const e = createEngine(${JSON.stringify(settings({}, { FAKE_VLLM_RECORD: record }))}, {
        model: "/models/demo", servedModelName: "demo", logger: silentLogger(), supervisor: { healthIntervalMs: 50 },
      });
      await e.start();
      await e.waitReady();
      process.exit(0);
    `;
    const node = spawn(process.execPath, ["--input-type=module", "-e", script], { stdio: "inherit" });
    const timer = setTimeout(() => node.kill("SIGKILL"), WAIT_MS);
    const [code] = await once(node, "exit");
    clearTimeout(timer);
    assert.equal(code, 0);
    const [run] = recorded(record);
    assert.ok(run, "the engine was started");
    const deadline = Date.now() + WAIT_MS;
    while (alive(run.pid) && Date.now() < deadline) await new Promise((r) => setTimeout(r, 25));
    assert.equal(alive(run.pid), false);
  });

  test("a stream in flight when the engine is stopped ends with an error, not a hang", async () => {
    const e = engine(settings({}, { FAKE_VLLM_ITL_MS: "20", FAKE_VLLM_OUTPUT_TOKENS: "10000" }));
    await e.start();
    await e.waitReady(AbortSignal.timeout(WAIT_MS));
    const stream = e.stream({ path: "/v1/completions", body: { model: "demo", prompt: "x" } });
    const first = await stream.next();
    assert.equal(first.done, false);
    const stopping = e.stop(5000);
    await assert.rejects(collect(stream), /XIM_ENGINE|closed the stream|cannot reach/);
    await stopping;
  });
});
