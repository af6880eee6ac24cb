/**
 * The contract every Engine keeps (style.md §11), as one suite that each
 * implementation's test file runs: health only when ready, /v1/models,
 * streams ending in [DONE], usage, deterministic bytes, OpenAI error shape,
 * abort on disconnect (counted by the engine), cache_salt accepted.
 * The abort and salt checks read the simulated engine's GET /debug/state,
 * so the suite runs against engines that are, or wrap, the simulator.
 */
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { request } from "node:http";
import { after, before, describe, test } from "node:test";
import { isXimError } from "../../src/core/errors.ts";
import {
  type Engine,
  EngineHttpError,
  type EngineRequest,
  type EngineStatus,
} from "../../src/engine/engine.ts";
import { isDone, ssePayloads } from "../../src/engine/sse.ts";
import type { Supervisor } from "../../src/engine/supervisor.ts";

export interface EngineTiming {
  loadTimeMs: number;
  ttftMs: number;
  itlMs: number;
  outputTokens: number;
}

export interface ConformanceTarget {
  name: string;
  /** A new, not yet started engine serving `model` with this timing. */
  create: (model: string, timing: EngineTiming) => Engine | Promise<Engine>;
}

/** Generous: a loaded 2-core CI machine may take seconds to start a child node process. */
export const WAIT_MS = 30_000;

export const TIMING: EngineTiming = { loadTimeMs: 400, ttftMs: 0, itlMs: 10, outputTokens: 300 };

/** GET a path on the engine: its status and body; status 0 when nothing answers. */
export function httpGet(
  baseUrl: string,
  path: string,
  headers: Record<string, string> = {},
): Promise<{ status: number; body: string }> {
  return new Promise((resolve) => {
    const req = request(new URL(path, baseUrl), { agent: false, headers }, (res) => {
      const parts: Buffer[] = [];
      res.on("data", (c: Buffer) => parts.push(c));
      res.on("end", () =>
        resolve({ status: res.statusCode ?? 0, body: Buffer.concat(parts).toString("utf8") }),
      );
    });
    req.on("error", () => resolve({ status: 0, body: "" }));
    req.end();
  });
}

/**
 * The Authorization header the node sends to an engine it runs as a child:
 * the run's key is in that child's environment (VLLM_API_KEY), which this
 * test, as the same user, can read; in-process engines have no key.
 */
export function engineAuth(engine: Engine): Record<string, string> {
  const pid = engine.status().pid;
  if (pid === undefined) return {};
  const entry = readFileSync(`/proc/${pid}/environ`, "utf8")
    .split("\0")
    .find((e) => e.startsWith("VLLM_API_KEY="));
  return entry ? { authorization: `Bearer ${entry.slice("VLLM_API_KEY=".length)}` } : {};
}

export interface SimDebugState {
  requests: number;
  completed: number;
  aborts: number;
  lastSalts: string[];
  lastRequests: Array<{ requestId: string; cacheSalt: string | null; outcome: string }>;
}

export async function debugState(engine: Engine): Promise<SimDebugState> {
  assert.ok(engine.baseUrl, "the engine has an address");
  const { status, body } = await httpGet(engine.baseUrl, "/debug/state");
  assert.equal(status, 200);
  return JSON.parse(body) as SimDebugState;
}

/** Resolves with the engine's first status that satisfies `want`; fails after `waitMs`. */
export function until(
  e: Supervisor,
  want: (s: EngineStatus) => boolean,
  waitMs = WAIT_MS,
): Promise<EngineStatus> {
  return new Promise((resolve, reject) => {
    if (want(e.status())) return resolve(e.status());
    const timer = setTimeout(() => reject(new Error(`timed out in state ${e.state}`)), waitMs);
    const on = (s: EngineStatus) => {
      if (!want(s)) return;
      clearTimeout(timer);
      e.off("state", on);
      resolve(s);
    };
    e.on("state", on);
  });
}

/** Poll `probe` until it returns true; fails after WAIT_MS. */
export async function eventually(what: string, probe: () => Promise<boolean>): Promise<void> {
  const deadline = Date.now() + WAIT_MS;
  while (Date.now() < deadline) {
    if (await probe()) return;
    await new Promise((r) => setTimeout(r, 25));
  }
  assert.fail(`timed out waiting for ${what}`);
}

export async function collect<T>(iterable: AsyncIterable<T>): Promise<T[]> {
  const out: T[] = [];
  for await (const payload of iterable) out.push(payload);
  return out;
}

function chat(model: string, extra: Record<string, unknown> = {}): EngineRequest {
  return {
    path: "/v1/chat/completions",
    body: { model, messages: [{ role: "user", content: "Say something short" }], max_tokens: 5, ...extra },
  };
}

export function runEngineConformance(target: ConformanceTarget): void {
  describe(`engine conformance: ${target.name}`, { timeout: 120_000 }, () => {
    const model = "conformance-model";
    let engine: Engine;

    before(async () => {
      engine = await target.create(model, TIMING);
    });
    after(async () => {
      await engine.stop(5000);
    });

    test("a started engine is loading, refuses requests and its /health is not 200 until the model is loaded", async () => {
      const states: string[] = [];
      engine.on("state", (s) => states.push(s.state));
      await engine.start();
      assert.equal(engine.state, "loading");
      assert.ok(engine.baseUrl);
      const early = await httpGet(engine.baseUrl, "/health");
      assert.notEqual(early.status, 200, "health answers 200 only once loaded (400 ms load time)");
      assert.throws(
        () => engine.stream(chat(model)),
        (err: unknown) => isXimError(err) && err.code === "XIM_ENGINE_NOT_READY",
      );
      await engine.waitReady(AbortSignal.timeout(WAIT_MS));
      assert.equal(engine.state, "ready");
      assert.equal((await httpGet(engine.baseUrl, "/health")).status, 200);
      assert.deepEqual(states.at(-1), "ready");
    });

    test("/v1/models lists the served model name", async () => {
      assert.ok(engine.baseUrl);
      const { status, body } = await httpGet(engine.baseUrl, "/v1/models", engineAuth(engine));
      assert.equal(status, 200);
      const ids = (JSON.parse(body) as { data: Array<{ id: string }> }).data.map((m) => m.id);
      assert.deepEqual(ids, [model]);
      assert.equal(engine.servedModelName, model);
    });

    test("a streamed chat completion is JSON chunks ending in [DONE], with no usage chunk unless asked", async () => {
      const payloads = await collect(ssePayloads(engine.stream(chat(model), AbortSignal.timeout(WAIT_MS))));
      assert.ok(isDone(payloads.at(-1) as Buffer), "last payload is [DONE]");
      const chunks = payloads.slice(0, -1).map((p) => JSON.parse(p.toString("utf8")));
      assert.ok(chunks.length >= 6, "role chunk + 5 tokens");
      for (const c of chunks) {
        assert.equal(c.object, "chat.completion.chunk");
        assert.equal(c.model, model);
        assert.equal(c.usage, undefined);
      }
      assert.equal(chunks[0].choices[0].delta.role, "assistant");
      assert.equal(chunks.at(-1).choices[0].finish_reason, "length");
    });

    test("stream_options.include_usage adds a usage chunk before [DONE]", async () => {
      const payloads = await collect(
        ssePayloads(
          engine.stream(
            chat(model, { stream_options: { include_usage: true } }),
            AbortSignal.timeout(WAIT_MS),
          ),
        ),
      );
      const usageChunk = JSON.parse((payloads.at(-2) as Buffer).toString("utf8"));
      assert.deepEqual(usageChunk.choices, []);
      assert.equal(usageChunk.usage.completion_tokens, 5);
      assert.ok(usageChunk.usage.prompt_tokens > 0);
      assert.equal(usageChunk.usage.total_tokens, usageChunk.usage.prompt_tokens + 5);
    });

    test("a streamed text completion ends in [DONE] too", async () => {
      const payloads = await collect(
        ssePayloads(
          engine.stream({
            path: "/v1/completions",
            body: { model, prompt: "Once upon a time", max_tokens: 3 },
          }),
        ),
      );
      assert.ok(isDone(payloads.at(-1) as Buffer));
      const chunks = payloads.slice(0, -1).map((p) => JSON.parse(p.toString("utf8")));
      assert.equal(chunks.length, 3);
      assert.ok(chunks.every((c) => c.object === "text_completion" && typeof c.choices[0].text === "string"));
    });

    test("the same request gives the same bytes (the relay's byte-for-byte check relies on it)", async () => {
      const req = { ...chat(model), requestId: "req-same-bytes" };
      const a = Buffer.concat(await collect(ssePayloads(engine.stream(req))));
      const b = Buffer.concat(await collect(ssePayloads(engine.stream(req))));
      assert.ok(a.equals(b));
      assert.match(a.toString("utf8"), /"id":"chatcmpl-req-same-bytes"/);
    });

    test("a non-streaming completion returns one JSON body with usage", async () => {
      const reply = await engine.complete(chat(model), AbortSignal.timeout(WAIT_MS));
      assert.equal(reply.status, 200);
      const body = JSON.parse(reply.body.toString("utf8"));
      assert.equal(body.object, "chat.completion");
      assert.equal(body.usage.completion_tokens, 5);
      assert.equal(typeof body.choices[0].message.content, "string");
    });

    test("an unknown model is an OpenAI-shaped error with its HTTP status", async () => {
      await assert.rejects(collect(ssePayloads(engine.stream(chat("no-such-model")))), (err: unknown) => {
        assert.ok(err instanceof EngineHttpError);
        assert.equal(err.status, 404);
        const body = JSON.parse(err.body.toString("utf8"));
        assert.equal(typeof body.error.message, "string");
        assert.equal(body.error.code, 404);
        return true;
      });
    });

    test("aborting a stream closes the connection and the engine counts the abort", async () => {
      const before = await debugState(engine);
      const ctl = new AbortController();
      const received: Buffer[] = [];
      // 300 tokens at 10 ms each: the stream is still running when we abort.
      const long = {
        path: "/v1/chat/completions" as const,
        body: { model, messages: [{ role: "user", content: "long" }] },
      };
      await assert.rejects(
        (async () => {
          for await (const p of ssePayloads(engine.stream(long, ctl.signal))) {
            received.push(p);
            if (received.length === 3) ctl.abort();
          }
        })(),
        (err: unknown) => (err as Error).name === "AbortError",
      );
      await eventually(
        "the engine to count the abort",
        async () => (await debugState(engine)).aborts === before.aborts + 1,
      );
    });

    test("a consumer that stops reading early (break) also aborts the request at the engine", async () => {
      const before = await debugState(engine);
      const long = { path: "/v1/completions" as const, body: { model, prompt: "long" } };
      for await (const _ of engine.stream(long)) break;
      await eventually(
        "the engine to count the abort",
        async () => (await debugState(engine)).aborts === before.aborts + 1,
      );
    });

    test("cache_salt is accepted and reaches the engine as sent; an empty one is refused as vLLM does", async () => {
      await collect(ssePayloads(engine.stream(chat(model, { cache_salt: "salt-of-conformance" }))));
      const state = await debugState(engine);
      assert.equal(state.lastSalts.at(-1), "salt-of-conformance");
      await assert.rejects(
        collect(ssePayloads(engine.stream(chat(model, { cache_salt: "" })))),
        (err: unknown) => {
          assert.ok(err instanceof EngineHttpError);
          assert.equal(err.status, 400);
          assert.match(
            err.body.toString("utf8"),
            /Parameter 'cache_salt' must be a non-empty string if provided/,
          );
          return true;
        },
      );
    });

    test("stop() ends the engine: state stopped, and nothing answers on its address", async () => {
      const url = engine.baseUrl;
      assert.ok(url);
      await engine.stop(5000);
      assert.equal(engine.state, "stopped");
      assert.equal((await httpGet(url, "/health")).status, 0);
    });
  });
}
