/**
 * The simulated engine against the vLLM contract: one check per row of
 * tests/fixtures/vllm/contract.md (ids C1..), over real HTTP to real
 * `xim engine-sim` child processes. A child process rather than an
 * in-process server because the contract is what a supervised engine shows
 * on the wire, including the socket-level refusal while loading (C1) and
 * the command-line flags that set the failure modes. The suite fails when a
 * row has no check or a check has no row, so the table and the suite stay
 * one list.
 */
import assert from "node:assert/strict";
import { type ChildProcessWithoutNullStreams, spawn } from "node:child_process";
import { once } from "node:events";
import { readFileSync } from "node:fs";
import { request } from "node:http";
import { createInterface } from "node:readline";
import { after, before, describe, test } from "node:test";
import { fileURLToPath } from "node:url";

const MAIN = fileURLToPath(new URL("../../main.ts", import.meta.url));
const TABLE = fileURLToPath(new URL("../fixtures/vllm/contract.md", import.meta.url));
/** Generous: a child start runs TypeScript through Node on a loaded 2-core CI machine. */
const WAIT_MS = 30_000;
const MAX_MODEL_LEN = 32;

interface Sim {
  child: ChildProcessWithoutNullStreams;
  baseUrl: string;
  exited: Promise<unknown>;
}

async function startSim(args: string[]): Promise<Sim> {
  const child = spawn(process.execPath, [MAIN, "engine-sim", "--port", "0", "--model", "m", ...args], {
    stdio: ["pipe", "pipe", "pipe"],
  });
  child.stderr.resume();
  const exited = once(child, "exit");
  const timer = setTimeout(() => child.kill("SIGKILL"), WAIT_MS);
  try {
    const [line] = (await once(createInterface({ input: child.stdout }), "line")) as [string];
    return { child, baseUrl: (JSON.parse(line) as { baseUrl: string }).baseUrl, exited };
  } finally {
    clearTimeout(timer);
  }
}

async function stopSim(sim: Sim | undefined): Promise<void> {
  if (!sim || sim.child.exitCode !== null) return;
  sim.child.kill("SIGTERM");
  const timer = setTimeout(() => sim.child.kill("SIGKILL"), WAIT_MS);
  await sim.exited;
  clearTimeout(timer);
}

interface Answer {
  status: number;
  headers: Record<string, string | string[] | undefined>;
  body: string;
}

/** One HTTP exchange on a fresh connection: the answer, or the connection error's code. */
function exchange(baseUrl: string, path: string, body?: unknown): Promise<Answer | { error: string }> {
  return new Promise((resolve) => {
    const req = request(
      new URL(path, baseUrl),
      {
        method: body === undefined ? "GET" : "POST",
        agent: false,
        headers: { "content-type": "application/json", "x-request-id": "contract-1" },
        timeout: WAIT_MS,
      },
      (res) => {
        const parts: Buffer[] = [];
        res.on("data", (c: Buffer) => parts.push(c));
        res.on("end", () =>
          resolve({
            status: res.statusCode ?? 0,
            headers: res.headers,
            body: Buffer.concat(parts).toString("utf8"),
          }),
        );
        res.on("error", (err: NodeJS.ErrnoException) => resolve({ error: err.code ?? err.message }));
      },
    );
    req.on("error", (err: NodeJS.ErrnoException) => resolve({ error: err.code ?? err.message }));
    req.on("timeout", () => req.destroy(new Error("timeout")));
    req.end(body === undefined ? undefined : JSON.stringify(body));
  });
}

async function call(baseUrl: string, path: string, body?: unknown): Promise<Answer> {
  const a = await exchange(baseUrl, path, body);
  assert.ok(!("error" in a), `${path} answered (${"error" in a ? a.error : ""})`);
  return a;
}

function errorOf(a: Answer): { message: string; type: string; param: string | null; code: number } {
  return (
    JSON.parse(a.body) as { error: { message: string; type: string; param: string | null; code: number } }
  ).error;
}

/** The JSON payloads of an SSE body, [DONE] excluded, after checking the framing. */
function events(a: Answer): Array<Record<string, unknown>> {
  assert.ok(a.body.endsWith("data: [DONE]\n\n"), a.body.slice(-200));
  const parts = a.body.split("\n\n");
  assert.equal(parts.pop(), "");
  assert.equal(parts.pop(), "data: [DONE]");
  return parts.map((p) => {
    assert.ok(p.startsWith("data: "), p);
    return JSON.parse(p.slice("data: ".length)) as Record<string, unknown>;
  });
}

const usageChunks = (a: Answer) => events(a).filter((e) => e.usage !== undefined && e.usage !== null);
const chat = (extra: Record<string, unknown> = {}) => ({
  model: "m",
  messages: [{ role: "user", content: "hello there" }],
  max_tokens: 3,
  ...extra,
});
/** `n` words: `n` prompt tokens to the simulator. */
const words = (n: number) => Array.from({ length: n }, () => "w").join(" ");

describe("the simulated engine keeps the vLLM contract (tests/fixtures/vllm/contract.md)", {
  timeout: 120_000,
}, () => {
  let ready: Sim | undefined;
  let loading: Sim | undefined;
  let failing: Sim | undefined;

  before(async () => {
    [ready, loading, failing] = await Promise.all([
      startSim(["--max-model-len", String(MAX_MODEL_LEN), "--output-tokens", "4"]),
      // Never ready within the test: ten minutes of load time.
      startSim(["--load-time-ms", "600000"]),
      startSim(["--output-tokens", "5", "--fail-mid-stream-after", "2"]),
    ]);
  });
  after(async () => {
    await Promise.all([stopSim(ready), stopSim(loading), stopSim(failing)]);
  });

  const url = () => (ready as Sim).baseUrl;

  const checks: Record<string, () => Promise<void>> = {
    async C1() {
      const base = (loading as Sim).baseUrl;
      for (const path of ["/health", "/v1/models"]) {
        const a = await exchange(base, path);
        assert.ok("error" in a, `nothing answers ${path} while loading`);
        assert.ok(["ECONNRESET", "ECONNREFUSED", "EPIPE"].includes(a.error), a.error);
      }
      const post = await exchange(base, "/v1/chat/completions", chat());
      assert.ok("error" in post, "a completion is not answered while loading");
    },
    async C2() {
      const a = await call(url(), "/health");
      assert.equal(a.status, 200);
      assert.equal(a.body, "");
    },
    async C3() {
      const a = await call(url(), "/v1/models");
      assert.equal(a.status, 200);
      const list = JSON.parse(a.body) as { object: string; data: Array<Record<string, unknown>> };
      assert.equal(list.object, "list");
      assert.equal(list.data.length, 1);
      const card = list.data[0];
      assert.equal(card.id, "m");
      assert.equal(card.object, "model");
      assert.equal(card.owned_by, "vllm");
      assert.equal(card.root, "m");
      assert.equal(card.max_model_len, MAX_MODEL_LEN);
    },
    async C4() {
      const a = await call(url(), "/v1/chat/completions", chat({ stream: true }));
      assert.equal(a.status, 200);
      assert.match(String(a.headers["content-type"]), /^text\/event-stream/);
      const chunks = events(a);
      assert.ok(chunks.length >= 2);
      for (const c of chunks) assert.equal(c.object, "chat.completion.chunk");
      assert.ok(!a.body.includes('": '), "compact JSON");
    },
    async C5() {
      const a = await call(url(), "/v1/chat/completions", chat({ stream: true }));
      assert.deepEqual(usageChunks(a), []);
    },
    async C6() {
      const a = await call(url(), "/v1/chat/completions", chat({ stream: true, stream_options: {} }));
      assert.equal(a.status, 200);
      const chunks = events(a);
      const usage = chunks.at(-1) as { choices: unknown[]; usage: Record<string, number> };
      assert.deepEqual(usage.choices, []);
      assert.equal(usage.usage.completion_tokens, 3);
      assert.equal(usage.usage.total_tokens, usage.usage.prompt_tokens + 3);
      assert.equal(usageChunks(a).length, 1);
    },
    async C7() {
      const a = await call(
        url(),
        "/v1/chat/completions",
        chat({ stream: true, stream_options: { include_usage: false } }),
      );
      assert.deepEqual(usageChunks(a), []);
    },
    async C8() {
      const asked = { stream_options: { include_usage: true } };
      for (const body of [chat(asked), chat({ ...asked, stream: false })]) {
        const a = await call(url(), "/v1/chat/completions", body);
        assert.equal(a.status, 400);
        const e = errorOf(a);
        assert.ok(e.message.includes("Stream options can only be defined when `stream=True`."), e.message);
        assert.deepEqual([e.type, e.param, e.code], ["Bad Request", "stream_options", 400]);
      }
    },
    async C9() {
      const a = await call(url(), "/v1/chat/completions", chat({ stream: false, stream_options: {} }));
      assert.equal(a.status, 200);
      assert.equal((JSON.parse(a.body) as { object: string }).object, "chat.completion");
    },
    async C10() {
      const a = await call(url(), "/v1/completions", { model: "m", prompt: words(MAX_MODEL_LEN) });
      assert.equal(a.status, 400);
      assert.deepEqual(errorOf(a), {
        message:
          "This model's maximum context length is 32 tokens. However, your request has 32 input tokens. " +
          "Please reduce the length of the input messages. (parameter=input_tokens, value=32)",
        type: "BadRequestError",
        param: "input_tokens",
        code: 400,
      });
      // One token fewer fits (vLLM: input length up to max_model_len - 1).
      const fits = await call(url(), "/v1/completions", { model: "m", prompt: words(31), max_tokens: 1 });
      assert.equal(fits.status, 200);
    },
    async C11() {
      const a = await call(url(), "/v1/completions", { model: "m", prompt: words(30), max_tokens: 3 });
      assert.equal(a.status, 400);
      assert.deepEqual(errorOf(a), {
        message:
          "'max_tokens' or 'max_completion_tokens' is too large: 3. This model's maximum context length is 32 " +
          "tokens and your request has 30 input tokens (3 > 32 - 30). (parameter=max_tokens, value=3)",
        type: "BadRequestError",
        param: "max_tokens",
        code: 400,
      });
      // Chat: max_completion_tokens counts; "user: w w" is 3 prompt tokens here.
      const c = await call(url(), "/v1/chat/completions", {
        model: "m",
        messages: [{ role: "user", content: "w w" }],
        max_completion_tokens: 30,
      });
      assert.equal(c.status, 400);
      assert.match(errorOf(c).message, /too large: 30\. .* your request has 3 input tokens \(30 > 32 - 3\)/);
      const fits = await call(url(), "/v1/completions", { model: "m", prompt: words(30), max_tokens: 2 });
      assert.equal(fits.status, 200);
    },
    async C12() {
      for (const model of [undefined, null, ""]) {
        const a = await call(url(), "/v1/chat/completions", { ...chat(), model });
        assert.equal(a.status, 200, `model ${JSON.stringify(model)}: ${a.body}`);
        assert.equal((JSON.parse(a.body) as { model: string }).model, "m");
      }
    },
    async C13() {
      const a = await call(url(), "/v1/chat/completions", chat({ model: "other" }));
      assert.equal(a.status, 404);
      assert.deepEqual(errorOf(a), {
        message: "The model `other` does not exist.",
        type: "NotFoundError",
        param: "model",
        code: 404,
      });
    },
    async C14() {
      for (const salt of ["", 7]) {
        const a = await call(url(), "/v1/chat/completions", chat({ cache_salt: salt }));
        assert.equal(a.status, 400);
        const e = errorOf(a);
        assert.ok(e.message.includes("Parameter 'cache_salt' must be a non-empty string if provided."));
        assert.deepEqual([e.type, e.param], ["Bad Request", null]);
      }
      const ok = await call(url(), "/v1/chat/completions", chat({ cache_salt: "s" }));
      assert.equal(ok.status, 200);
    },
    async C15() {
      const base = (failing as Sim).baseUrl;
      const a = await call(base, "/v1/chat/completions", {
        ...chat({ max_tokens: undefined }),
        stream: true,
        stream_options: { include_usage: true },
      });
      assert.equal(a.status, 200);
      assert.ok(
        a.body.endsWith(
          'data: {"error": {"message": "Internal server error", "type": "InternalServerError", "param": null, "code": 500}}\n\n' +
            "data: [DONE]\n\n",
        ),
        a.body.slice(-300),
      );
      const chunks = events(a);
      const tokens = chunks.filter((c) => {
        const choice = (c.choices as Array<{ delta?: { content?: string } }> | undefined)?.[0];
        return typeof choice?.delta?.content === "string" && choice.delta.content !== "";
      });
      assert.equal(tokens.length, 2, "two tokens, then the error");
      assert.deepEqual(usageChunks(a), [], "no usage chunk after a failure");
      // A request that ends before the failure point completes normally.
      const short = await call(base, "/v1/chat/completions", chat({ stream: true, max_tokens: 2 }));
      assert.ok(!short.body.includes('"error"'));
    },
    async C16() {
      const a = await call((failing as Sim).baseUrl, "/v1/completions", { model: "m", prompt: "p" });
      assert.equal(a.status, 500);
      assert.equal(
        a.body,
        '{"error":{"message":"Internal server error","type":"InternalServerError","param":null,"code":500}}',
      );
    },
    async C17() {
      const a = await call(url(), "/v1/chat/completions", chat({ model: "other" }));
      const body = JSON.parse(a.body) as Record<string, unknown>;
      assert.deepEqual(Object.keys(body), ["error"]);
      assert.deepEqual(Object.keys(body.error as object), ["message", "type", "param", "code"]);
      assert.equal(errorOf(a).code, a.status);
    },
    async C18() {
      const a = await call(url(), "/v1/chat/completions", chat());
      assert.equal((JSON.parse(a.body) as { id: string }).id, "chatcmpl-contract-1");
    },
    async C19() {
      const a = await call(url(), "/metrics");
      assert.equal(a.status, 200);
      assert.match(a.body, /^vllm:num_requests_running\{model_name="m",engine="0"\} \d+$/m);
      assert.match(a.body, /^vllm:num_requests_waiting\{model_name="m",engine="0"\} \d+$/m);
    },
  };

  const rows = readFileSync(TABLE, "utf8")
    .split("\n")
    .map((line) => /^\| (C\d+) \|/.exec(line)?.[1])
    .filter((id): id is string => id !== undefined);

  test("every row of the contract table has a check, and every check a row", () => {
    assert.ok(rows.length >= 19, `rows read from the table: ${rows.join(", ")}`);
    assert.deepEqual([...rows].sort(), Object.keys(checks).sort());
  });

  for (const id of rows) {
    test(`${id} (tests/fixtures/vllm/contract.md)`, { timeout: WAIT_MS }, async () => {
      const check = checks[id];
      assert.ok(check, `no check for row ${id}`);
      await check();
    });
  }
});
