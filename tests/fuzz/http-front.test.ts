/**
 * Fuzz of the router's OpenAI front (fast-check), against a real stack in
 * this process: the router service with its HTTP front and one enrolled
 * node whose relay runs a simulated engine. Malformed JSON, wrong types,
 * missing fields, huge bodies, odd methods, paths and headers, and raw
 * bytes that are not HTTP at all must get an OpenAI-shaped 4xx (or a
 * normal answer when the input happens to be valid), never a 5xx, a hang
 * or a crash; the router answers normally afterwards. Each property runs
 * for the fuzz budget (tests/fuzz/budget.ts: a few seconds in `npm test`,
 * `npm run fuzz -- --seconds N` for longer); the numbers of inputs tried
 * are printed (bench/fuzz-results.md records them).
 */
import assert from "node:assert/strict";
import net from "node:net";
import { after, before, describe, test } from "node:test";
import fc from "fast-check";
import { MAX_BODY_BYTES } from "../../src/router/openai-http.ts";
import { chatBody, post, Stack } from "../helpers/stack.ts";
import { budget, fuzzTimeoutMs } from "./budget.ts";

interface Answer {
  status: number;
  headers: Record<string, string>;
  body: Buffer;
}

/** Send raw bytes; parse the one HTTP/1.1 answer (Content-Length or close-delimited). */
function raw(port: number, bytes: Buffer, timeoutMs = 15_000, halfClose = false): Promise<Answer | "closed"> {
  return new Promise((resolve, reject) => {
    const socket = net.connect(port, "127.0.0.1");
    const parts: Buffer[] = [];
    const timer = setTimeout(() => {
      socket.destroy();
      reject(
        new Error(
          `no answer within ${timeoutMs} ms to ${JSON.stringify(bytes.subarray(0, 200).toString("latin1"))}`,
        ),
      );
    }, timeoutMs);
    const finish = () => {
      clearTimeout(timer);
      const all = Buffer.concat(parts);
      const end = all.indexOf("\r\n\r\n");
      if (all.length === 0 || end === -1) return resolve("closed");
      const head = all.subarray(0, end).toString("latin1").split("\r\n");
      const status = Number(/^HTTP\/1\.[01] (\d{3})/.exec(head[0])?.[1]);
      const headers: Record<string, string> = {};
      for (const line of head.slice(1)) {
        const i = line.indexOf(":");
        headers[line.slice(0, i).toLowerCase()] = line.slice(i + 1).trim();
      }
      let body: Buffer = all.subarray(end + 4);
      if (headers["content-length"] !== undefined) body = body.subarray(0, Number(headers["content-length"]));
      else if (headers["transfer-encoding"] === "chunked") body = dechunk(body);
      resolve({ status, headers, body });
    };
    socket.on("data", (d: Buffer) => {
      parts.push(d);
      // One answer is all we want: stop once its body is complete.
      const all = Buffer.concat(parts);
      const end = all.indexOf("\r\n\r\n");
      if (end === -1) return;
      const m = /\r\ncontent-length: *(\d+)/i.exec(all.subarray(0, end).toString("latin1"));
      if (m && all.length >= end + 4 + Number(m[1])) {
        socket.destroy();
        finish();
      }
      if (!m && all.subarray(end).includes("\r\n0\r\n\r\n")) {
        socket.destroy();
        finish();
      }
    });
    socket.on("error", () => undefined);
    socket.on("close", () => {
      if (!socket.destroyed || parts.length === 0) finish();
      else finish();
    });
    // A complete request is followed by nothing (Connection: close ends it); bytes that may be an
    // incomplete request are followed by our end of the stream, so the server sees where they stop.
    if (halfClose) socket.end(bytes);
    else socket.write(bytes);
  });
}

function dechunk(body: Buffer): Buffer {
  const out: Buffer[] = [];
  let at = 0;
  for (;;) {
    const eol = body.indexOf("\r\n", at);
    if (eol === -1) break;
    const size = Number.parseInt(body.subarray(at, eol).toString("latin1"), 16);
    if (!Number.isFinite(size) || size === 0) break;
    out.push(body.subarray(eol + 2, eol + 2 + size));
    at = eol + 2 + size + 2;
  }
  return Buffer.concat(out);
}

/** The rules every answer obeys: no 5xx except the capacity 503s, errors in OpenAI's shape. */
function checkAnswer(a: Answer, what: string): void {
  assert.ok(a.status >= 200 && a.status < 600, `${what}: a status (${a.status})`);
  assert.ok(
    a.status < 500 || a.status === 503,
    `${what}: no server error, got ${a.status}: ${a.body.toString().slice(0, 300)}`,
  );
  if (a.status >= 400) {
    let parsed: { error?: { message?: unknown; type?: unknown; code?: unknown } };
    try {
      parsed = JSON.parse(a.body.toString("utf8"));
    } catch {
      assert.fail(
        `${what}: status ${a.status} body is not JSON: ${JSON.stringify(a.body.toString().slice(0, 300))}`,
      );
    }
    assert.equal(typeof parsed.error?.message, "string", `${what}: error.message`);
    assert.equal(typeof parsed.error?.type, "string", `${what}: error.type`);
    assert.ok("code" in (parsed.error ?? {}), `${what}: error.code`);
  }
}

describe("fuzz: the router's OpenAI front", { timeout: fuzzTimeoutMs(4, 300_000) }, () => {
  let stack: Stack;
  let key: string;
  let port: number;
  const tried: Record<string, number> = {};
  const rejections: unknown[] = [];
  const onRejection = (reason: unknown) => rejections.push(reason);

  before(async () => {
    process.on("unhandledRejection", onRejection);
    stack = await Stack.start();
    // A context long enough for the just-under-the-limit prompt (~1.7 M words): the engine refuses longer ones as vLLM does.
    // A long lease: the 8 MiB prompt below keeps router, node and engine (one process here) busy
    // for seconds on a loaded machine, and this file tests the HTTP front, not lease expiry.
    await stack.addNode({
      sim: { outputTokens: 8, maxModelLen: 4_000_000 },
      env: { XEROTIER_AGENT_LEASE_RENEWAL_INTERVAL_MS: "1000", XEROTIER_AGENT_LEASE_DURATION_MS: "30000" },
    });
    key = stack.apiKey("default", "fuzz");
    port = Number(new URL(stack.url).port);
  });
  after(async () => {
    process.off("unhandledRejection", onRejection);
    await stack?.close();
  });

  const request = (
    method: string,
    path: string,
    headers: Record<string, string>,
    body: Buffer,
    framing: "length" | "chunked" = "length",
  ): Buffer => {
    const lines = [`${method} ${path} HTTP/1.1`, "Host: 127.0.0.1", "Connection: close"];
    for (const [k, v] of Object.entries(headers)) lines.push(`${k}: ${v}`);
    if (framing === "length") lines.push(`Content-Length: ${body.length}`);
    else lines.push("Transfer-Encoding: chunked");
    const head = Buffer.from(`${lines.join("\r\n")}\r\n\r\n`, "latin1");
    if (framing === "length") return Buffer.concat([head, body]);
    const chunks =
      body.length > 0 ? [Buffer.from(`${body.length.toString(16)}\r\n`), body, Buffer.from("\r\n")] : [];
    return Buffer.concat([head, ...chunks, Buffer.from("0\r\n\r\n")]);
  };
  const paths = ["/v1/chat/completions", "/v1/completions"];
  /** After an input that got no answer: the front is not wedged and answers its health check. */
  const stillAnswers = async (what: string): Promise<void> => {
    const a = await raw(
      port,
      Buffer.from("GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n"),
    );
    assert.ok(
      a !== "closed" && a.status === 200,
      `${what}: /health afterwards got ${a === "closed" ? "a close" : a.status}`,
    );
  };

  test("malformed JSON bodies get 400 invalid_json (or another 4xx), never a 5xx", async () => {
    const body = fc.oneof(
      fc.string({ maxLength: 300 }),
      fc.uint8Array({ maxLength: 300 }).map((b) => Buffer.from(b).toString("latin1")),
      // Valid JSON cut short, or with bytes flipped.
      fc
        .tuple(fc.jsonValue({ maxDepth: 3 }), fc.nat(), fc.integer({ min: 0, max: 255 }))
        .map(([v, cut, byte]) => {
          const s = JSON.stringify({
            model: "sim-model",
            messages: [{ role: "user", content: "x" }],
            extra: v,
          });
          const at = cut % s.length;
          return byte % 2 === 0
            ? s.slice(0, at)
            : s.slice(0, at) + String.fromCharCode(byte) + s.slice(at + 1);
        }),
    );
    let runs = 0;
    await fc.assert(
      fc.asyncProperty(
        body,
        fc.constantFrom(...paths),
        fc.constantFrom("length", "chunked"),
        async (text, path, framing) => {
          runs++;
          const a = await raw(
            port,
            request(
              "POST",
              path,
              { authorization: `Bearer ${key}`, "content-type": "application/json" },
              Buffer.from(text, "latin1"),
              framing as "length" | "chunked",
            ),
          );
          assert.notEqual(a, "closed", "an answer");
          checkAnswer(a as Answer, `body ${JSON.stringify(text.slice(0, 80))}`);
        },
      ),
      budget(),
    );
    tried["malformed JSON bodies"] = runs;
  });

  test("wrong types and missing fields get an OpenAI 4xx from the router or the engine, or a normal answer", async () => {
    const anyValue = fc.oneof(
      fc.constant(undefined),
      fc.constant(null),
      fc.boolean(),
      fc.integer(),
      fc.double(),
      fc.string({ maxLength: 20 }),
      fc.array(fc.jsonValue({ maxDepth: 1 }), { maxLength: 3 }),
      fc.dictionary(fc.string({ maxLength: 5 }), fc.jsonValue({ maxDepth: 1 }), { maxKeys: 3 }),
    );
    const fields = fc.record(
      {
        model: fc.oneof(fc.constant("sim-model"), fc.constant("other-model"), fc.constant(""), anyValue),
        messages: fc.oneof(
          fc.constant([{ role: "user", content: "hi" }]),
          fc.array(fc.record({ role: anyValue, content: anyValue }), { maxLength: 3 }),
          anyValue,
        ),
        prompt: fc.oneof(
          fc.constant("hello"),
          fc.array(fc.string({ maxLength: 8 }), { maxLength: 3 }),
          anyValue,
        ),
        stream: fc.oneof(fc.boolean(), anyValue),
        stream_options: fc.oneof(fc.record({ include_usage: anyValue }), anyValue),
        max_tokens: fc.oneof(fc.integer({ min: -3, max: 20 }), anyValue),
        cache_salt: anyValue,
        temperature: anyValue,
      },
      { requiredKeys: [] },
    );
    const top = fc.oneof(
      { weight: 8, arbitrary: fields },
      { weight: 1, arbitrary: fc.jsonValue({ maxDepth: 2 }) },
    );
    let runs = 0;
    await fc.assert(
      fc.asyncProperty(top, fc.constantFrom(...paths), async (value, path) => {
        runs++;
        const text = JSON.stringify(value) ?? "null";
        const a = await raw(
          port,
          request(
            "POST",
            path,
            { authorization: `Bearer ${key}`, "content-type": "application/json" },
            Buffer.from(text),
          ),
        );
        assert.notEqual(a, "closed", "an answer");
        const answer = a as Answer;
        checkAnswer(answer, `body ${text.slice(0, 200)}`);
        if (answer.status === 200 && String(answer.headers["content-type"]).startsWith("text/event-stream"))
          assert.ok(answer.body.toString().endsWith("\n\n"), "a stream ends on an event boundary");
      }),
      budget(),
    );
    tried["wrong types and missing fields"] = runs;
  });

  test("odd methods, paths and headers get an OpenAI 4xx; bytes that are not HTTP get a 400 or a close", async () => {
    const token = fc.stringMatching(/^[!#$%&'*+.^_`|~0-9A-Za-z-]{1,12}$/);
    const headerValue = fc.oneof(
      fc.string({ maxLength: 60 }).map((s) => s.replace(/[\r\n]/g, "")),
      fc.constant(`Bearer ${"x".repeat(5000)}`),
      fc.constant("Bearer xak_not_a_key"),
      fc.constant(""),
    );
    const input = fc.record({
      method: fc.oneof(fc.constantFrom("GET", "POST", "PUT", "DELETE", "OPTIONS", "HEAD", "PATCH"), token),
      path: fc.oneof(
        fc.constantFrom(
          "/v1/chat/completions",
          "/v1/completions",
          "/v1/models",
          "/health",
          "/",
          "*",
          "/v1/chat/completions?x=1",
        ),
        fc.webPath(),
        fc.string({ maxLength: 40 }).map((s) => `/${encodeURIComponent(s)}`),
      ),
      auth: fc.oneof(fc.constant(`Bearer ${key}`), headerValue, fc.constant(undefined)),
      requestId: fc.option(headerValue),
      contentType: fc.option(headerValue),
      extra: fc.array(fc.tuple(token, headerValue), { maxLength: 4 }),
      body: fc.oneof(fc.constant(JSON.stringify(chatBody())), fc.string({ maxLength: 50 })),
    });
    let runs = 0;
    await fc.assert(
      fc.asyncProperty(input, async (i) => {
        runs++;
        const headers: Record<string, string> = {};
        for (const [k, v] of i.extra)
          if (!/^(host|content-length|transfer-encoding|connection|expect|upgrade)$/i.test(k)) headers[k] = v;
        if (i.auth !== undefined) headers.authorization = i.auth;
        if (i.requestId !== null) headers["x-request-id"] = i.requestId;
        if (i.contentType !== null) headers["content-type"] = i.contentType;
        const a = await raw(port, request(i.method, i.path, headers, Buffer.from(i.body)));
        // HEAD and some parse failures leave no body to judge: the front must still answer the next request.
        if (a === "closed") return stillAnswers(`${i.method} ${i.path}`);
        if (i.method === "HEAD") {
          assert.ok(a.status < 500 || a.status === 503, `HEAD ${i.path}: got ${a.status}`);
          return;
        }
        checkAnswer(a, `${i.method} ${i.path} ${JSON.stringify(headers).slice(0, 200)}`);
      }),
      budget(),
    );
    tried["methods, paths and headers"] = runs;

    let garbage = 0;
    await fc.assert(
      fc.asyncProperty(fc.uint8Array({ minLength: 1, maxLength: 400 }), async (bytes) => {
        garbage++;
        const a = await raw(port, Buffer.from(bytes), 15_000, true);
        if (a === "closed") return stillAnswers("garbage bytes");
        assert.ok(a.status >= 400 && a.status < 500, `garbage got ${a.status}`);
        checkAnswer(a, "garbage bytes");
      }),
      budget(),
    );
    tried["bytes that are not HTTP"] = garbage;
  });

  test("huge bodies and headers: 413 or 431 in OpenAI's shape, valid large prompts served", async () => {
    const auth = { authorization: `Bearer ${key}`, "content-type": "application/json" };
    const cases: Array<[string, Buffer, "length" | "chunked", Record<string, string>]> = [
      ["one byte over the limit", Buffer.alloc(MAX_BODY_BYTES + 1, 0x20), "length", auth],
      ["over the limit, chunked", Buffer.alloc(MAX_BODY_BYTES + 4096, 0x7b), "chunked", auth],
      ["32 MiB", Buffer.alloc(32 * 1024 * 1024, 0x61), "length", auth],
      ["over the limit without a key", Buffer.alloc(MAX_BODY_BYTES + 1, 0x20), "length", {}],
      ["a 100 KiB header", Buffer.from("{}"), "length", { ...auth, "x-junk": "j".repeat(100 * 1024) }],
    ];
    for (const [what, body, framing, headers] of cases) {
      const a = await raw(port, request("POST", "/v1/chat/completions", headers, body, framing), 60_000);
      // The server may answer before reading the whole body and close; the answer must still come.
      assert.notEqual(a, "closed", `${what}: an answer`);
      checkAnswer(a as Answer, what);
      assert.ok([401, 413, 431].includes((a as Answer).status), `${what}: got ${(a as Answer).status}`);
    }
    // Just under the limit and valid: the node relays it (the dispatch fits one protocol message).
    const content = "word ".repeat(Math.floor((MAX_BODY_BYTES - 200) / 5));
    const big = await post(
      stack.url,
      "/v1/chat/completions",
      chatBody({ messages: [{ role: "user", content }] }),
      {
        authorization: `Bearer ${key}`,
      },
    );
    assert.equal(big.status, 200, big.body.toString().slice(0, 300));
    tried["huge bodies and headers"] = cases.length + 1;
  });

  test("the router still serves normally, and nothing was rejected unhandled", async (t) => {
    const ok = await post(stack.url, "/v1/chat/completions", chatBody(), { authorization: `Bearer ${key}` });
    assert.equal(ok.status, 200);
    assert.deepEqual(rejections, []);
    assert.equal(stack.service.relay.active, 0, "no stream left open");
    const total = Object.values(tried).reduce((a, b) => a + b, 0);
    for (const [k, v] of Object.entries(tried)) t.diagnostic(`${k}: ${v} inputs`);
    t.diagnostic(`HTTP front: ${total} inputs, none answered 5xx, none crashed`);
  });
});
