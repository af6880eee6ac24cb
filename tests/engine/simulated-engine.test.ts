import assert from "node:assert/strict";
import { request } from "node:http";
import { after, describe, test } from "node:test";
import { SimulatedEngineServer } from "../../src/engine/simulated.ts";
import { SimulatedEngine } from "../../src/engine/simulated-engine.ts";
import { ssePayloads } from "../../src/engine/sse.ts";
import { collect, eventually, httpGet, runEngineConformance, WAIT_MS } from "./engine.case.ts";

runEngineConformance({
  name: "simulated engine in this process",
  create: (model, timing) => new SimulatedEngine({ model, ...timing }),
});

describe("the simulated server", () => {
  const servers: SimulatedEngineServer[] = [];
  after(async () => {
    for (const s of servers) await s.close();
  });

  async function serve(options: ConstructorParameters<typeof SimulatedEngineServer>[0]) {
    const server = new SimulatedEngineServer(options);
    servers.push(server);
    return { server, ...(await server.listen(0)) };
  }

  function post(baseUrl: string, path: string, body: string) {
    return new Promise<{ status: number; body: string; headers: Record<string, unknown> }>(
      (resolve, reject) => {
        const req = request(new URL(path, baseUrl), { method: "POST", agent: false }, (res) => {
          const parts: Buffer[] = [];
          res.on("data", (c: Buffer) => parts.push(c));
          res.on("end", () =>
            resolve({
              status: res.statusCode ?? 0,
              body: Buffer.concat(parts).toString("utf8"),
              headers: res.headers,
            }),
          );
        });
        req.on("error", reject);
        req.end(body);
      },
    );
  }

  test("with loading503, while loading /health and API paths answer 503 in OpenAI's error shape", {
    timeout: 10_000,
  }, async () => {
    const { baseUrl } = await serve({ model: "m", loadTimeMs: 60_000, loading503: true });
    assert.equal((await httpGet(baseUrl, "/health")).status, 503);
    const models = await httpGet(baseUrl, "/v1/models");
    assert.equal(models.status, 503);
    assert.equal(JSON.parse(models.body).error.type, "ServiceUnavailableError");
  });

  test("the SSE bytes on the wire are `data: <json>\\n\\n` events ending in `data: [DONE]\\n\\n`", {
    timeout: 10_000,
  }, async () => {
    const { baseUrl } = await serve({ model: "m", outputTokens: 3, created: 1700000000 });
    const res = await post(
      baseUrl,
      "/v1/completions",
      JSON.stringify({ model: "m", prompt: "p", stream: true }),
    );
    assert.equal(res.status, 200);
    assert.match(String(res.headers["content-type"]), /^text\/event-stream/);
    const events = res.body.split("\n\n");
    assert.equal(events.pop(), "");
    assert.equal(events.pop(), "data: [DONE]");
    assert.equal(events.length, 3);
    for (const e of events) {
      assert.ok(e.startsWith("data: {"));
      assert.equal(JSON.parse(e.slice(6)).created, 1700000000);
    }
  });

  test("with stampChunks each streamed event carries the host's monotonic clock; without, none does", {
    timeout: 10_000,
  }, async () => {
    const events = async (stampChunks: boolean) => {
      const { baseUrl } = await serve({ model: "m", outputTokens: 3, stampChunks });
      const res = await post(
        baseUrl,
        "/v1/chat/completions",
        JSON.stringify({ model: "m", messages: [{ role: "user", content: "p" }], stream: true }),
      );
      assert.equal(res.status, 200);
      return res.body
        .split("\n\n")
        .filter((e) => e.startsWith("data: {"))
        .map((e) => JSON.parse(e.slice(6)) as Record<string, unknown>);
    };
    const before = Number(process.hrtime.bigint()) / 1e6;
    const stamped = (await events(true)).map((e) => e.xim_sent_mono_ms as number);
    const after = Number(process.hrtime.bigint()) / 1e6;
    assert.equal(stamped.length, 4); // the role event and three tokens
    // The same clock in this process: every stamp lies between the request and its answer, in order.
    for (const [i, t] of stamped.entries()) {
      assert.ok(t >= before && t <= after, `stamp ${t} within [${before}, ${after}]`);
      if (i > 0) assert.ok(t >= stamped[i - 1]);
    }
    assert.ok((await events(false)).every((e) => !("xim_sent_mono_ms" in e)));
  });

  test("malformed bodies get 400 with the OpenAI error shape; wrong methods 405", {
    timeout: 10_000,
  }, async () => {
    const { baseUrl } = await serve({ model: "m" });
    const bad = await post(baseUrl, "/v1/chat/completions", "{not json");
    assert.equal(bad.status, 400);
    assert.deepEqual(Object.keys(JSON.parse(bad.body).error).sort(), ["code", "message", "param", "type"]);
    const noMessages = await post(baseUrl, "/v1/chat/completions", JSON.stringify({ model: "m" }));
    assert.equal(noMessages.status, 400);
    assert.equal(JSON.parse(noMessages.body).error.param, "messages");
    assert.equal((await httpGet(baseUrl, "/v1/chat/completions")).status, 405);
  });

  test("GET /metrics counts requests and salts by hash in Prometheus text", { timeout: 10_000 }, async () => {
    const { baseUrl } = await serve({ model: "m", outputTokens: 2 });
    for (const salt of ["a", "a", "b"]) {
      await post(baseUrl, "/v1/completions", JSON.stringify({ model: "m", prompt: "p", cache_salt: salt }));
    }
    const { body } = await httpGet(baseUrl, "/metrics");
    assert.match(body, /^xim_sim_requests_total 3$/m);
    assert.match(body, /^xim_sim_cache_salts_distinct 2$/m);
    assert.match(body, /^xim_sim_cache_salt_requests_total\{salt_sha256="[0-9a-f]{16}"\} 2$/m);
    assert.match(body, /^vllm:num_requests_running\{model_name="m",engine="0"\} 0$/m);
  });

  test("with --max-num-seqs 1 a second request waits for the first, and one that leaves while waiting is an abort", {
    timeout: 30_000,
  }, async () => {
    const engine = new SimulatedEngine({ model: "m", outputTokens: 400, itlMs: 5, maxNumSeqs: 1 });
    await engine.start();
    try {
      await engine.waitReady(AbortSignal.timeout(WAIT_MS));
      const body = { model: "m", prompt: "p" };
      const first = engine.stream({ path: "/v1/completions", body });
      assert.equal((await first.next()).done, false, "the first request is generating");
      const leaver = new AbortController();
      const waiting = collect(
        ssePayloads(engine.stream({ path: "/v1/completions", body: { ...body, max_tokens: 2 } })),
      );
      const leaving = collect(engine.stream({ path: "/v1/completions", body }, leaver.signal));
      await eventually("two requests to wait", async () => engine.server.stats().waiting === 2);
      assert.equal(engine.server.stats().running, 1);
      assert.match(engine.server.metrics(), /^vllm:num_requests_waiting\{model_name="m",engine="0"\} 2$/m);
      leaver.abort();
      await assert.rejects(leaving, { name: "AbortError" });
      await eventually("the leaver to be counted", async () => engine.server.stats().aborts === 1);
      await collect(first);
      assert.equal((await waiting).length, 3, "2 tokens and [DONE] once the slot was free");
      assert.deepEqual(
        { running: engine.server.stats().running, waiting: engine.server.stats().waiting },
        { running: 0, waiting: 0 },
      );
    } finally {
      await engine.stop(1000);
    }
  });

  test("ignore_eos with max_tokens generates exactly max_tokens, beyond the default length (benchmarks rely on it)", {
    timeout: 10_000,
  }, async () => {
    const { baseUrl } = await serve({ model: "m", outputTokens: 4 });
    const res = await post(
      baseUrl,
      "/v1/completions",
      JSON.stringify({ model: "m", prompt: "p", max_tokens: 40, ignore_eos: true }),
    );
    const body = JSON.parse(res.body);
    assert.equal(body.usage.completion_tokens, 40);
    assert.equal(body.choices[0].finish_reason, "length");
    const short = JSON.parse(
      (await post(baseUrl, "/v1/completions", JSON.stringify({ model: "m", prompt: "p", max_tokens: 40 })))
        .body,
    );
    assert.equal(short.usage.completion_tokens, 4);
    assert.equal(short.choices[0].finish_reason, "stop");
  });

  test("a client that stops reading stalls the generation instead of filling a buffer", {
    timeout: 60_000,
  }, async () => {
    // 200,000 tokens are about 30 MB of SSE: far more than loopback socket buffers hold.
    const total = 200_000;
    const { server, baseUrl } = await serve({ model: "m", outputTokens: total });
    const body = JSON.stringify({ model: "m", prompt: "p", stream: true });
    const req = request(new URL("/v1/completions", baseUrl), { method: "POST", agent: false }, (res) =>
      res.pause(),
    );
    req.end(body);
    try {
      // Stalled = no progress over 300 ms; allowed up to 30 s to get there on a busy machine.
      let stalledAt = -1;
      const deadline = Date.now() + 30_000;
      let last = -1;
      while (Date.now() < deadline) {
        await new Promise((r) => setTimeout(r, 300));
        const now = server.stats().generationTokens;
        if (now > 0 && now === last) {
          stalledAt = now;
          break;
        }
        last = now;
      }
      assert.ok(stalledAt > 0, "the generation stalled behind the unread socket");
      assert.ok(stalledAt < total, `stalled at ${stalledAt} of ${total} tokens`);
      assert.equal(server.stats().running, 1);
    } finally {
      req.destroy();
    }
    await eventually("the abort to be counted", async () => server.stats().aborts === 1);
    assert.equal(server.stats().lastRequests.at(-1)?.outcome, "aborted");
  });
});
