/**
 * Fuzz of the router's two public HTTP ports, against real `xim router
 * serve` processes (HTTPS enrollment, and --insecure-http): random,
 * malformed, oversized and aborted requests (the issue-14 crash among
 * them: an over-limit enrollment upload cut short) go to the enrollment
 * port and the OpenAI API port for the fuzz budget (tests/fuzz/budget.ts).
 * After every input the router is alive, and after one that got no answer
 * the port answers its health check; no malformed request is answered
 * 5xx (the API's 503 "no node can serve this" is right and allowed); after
 * the run it answers its health checks and its memory stayed bounded.
 */
import assert from "node:assert/strict";
import { after, before, describe, test } from "node:test";
import fc from "fast-check";
import { createApiKey } from "../../src/router/api-keys.ts";
import { MAX_BODY_BYTES as ENROLL_MAX_BODY } from "../../src/router/enroll-server.ts";
import { RouterStore } from "../../src/router/store.ts";
import {
  connect,
  exchange,
  getStatus,
  type RouterChild,
  startRouterChild,
} from "../security/router-child.ts";
import { FUZZ_SECONDS, fuzz, fuzzTimeoutMs } from "./budget.ts";

/**
 * RSS may grow this much over the run: buffers of the largest refused bodies,
 * V8 heap growth and TLS sessions; a leak per request (thousands of them)
 * goes past it within a long `npm run fuzz`.
 */
const RSS_GROWTH_LIMIT = 256 * 1024 * 1024;

type Ending = "complete" | "abort-after-headers" | "abort-mid-body" | "abort-after-body" | "garbage";

interface Input {
  method: string;
  path: string;
  headers: [string, string][];
  body: Buffer;
  framing: "length" | "chunked" | "short-length";
  ending: Ending;
}

const token = fc.stringMatching(/^[!#$%&'*+.^_`|~0-9A-Za-z-]{1,12}$/);
const headerValue = fc.oneof(
  fc.string({ maxLength: 60 }).map((s) => s.replace(/[\r\n]/g, "")),
  fc.constant("x".repeat(9000)),
  fc.constant(""),
);

function inputs(port: "enroll" | "api", apiKey: string): fc.Arbitrary<Input> {
  const paths =
    port === "enroll"
      ? ["/v1/enroll", "/v1/enroll?x=1", "/v1/health", "/", "*"]
      : ["/v1/chat/completions", "/v1/completions", "/v1/models", "/health", "/", "*"];
  const oversized = port === "enroll" ? ENROLL_MAX_BODY + 1 : 9 * 1024 * 1024;
  // Shaped like a real request with fields of any type.
  const shaped: fc.Arbitrary<unknown> =
    port === "enroll"
      ? fc.record(
          {
            protocolVersion: fc.oneof(fc.integer(), fc.string()),
            joinKey: fc.oneof(fc.string({ maxLength: 80 }), fc.constant(`xjk_${"A".repeat(40)}`)),
            nodePublicKey: fc.string({ maxLength: 50 }),
            hostname: fc.oneof(fc.string({ maxLength: 300 }), fc.integer()),
            agentVersion: fc.string({ maxLength: 20 }),
          },
          { requiredKeys: [] },
        )
      : fc.record(
          {
            model: fc.oneof(fc.constant("sim-model"), fc.string({ maxLength: 20 }), fc.integer()),
            messages: fc.oneof(fc.constant([{ role: "user", content: "hi" }]), fc.jsonValue({ maxDepth: 2 })),
            stream: fc.oneof(fc.boolean(), fc.jsonValue({ maxDepth: 1 })),
            max_tokens: fc.oneof(fc.integer({ min: -3, max: 20 }), fc.string()),
          },
          { requiredKeys: [] },
        );
  const json = fc.oneof(
    fc.jsonValue({ maxDepth: 3 }).map((v) => JSON.stringify(v) ?? "null"),
    shaped.map((v) => JSON.stringify(v)),
  );
  const body = fc.oneof(
    { weight: 6, arbitrary: json.map((s) => Buffer.from(s)) },
    { weight: 3, arbitrary: fc.uint8Array({ maxLength: 600 }).map((b) => Buffer.from(b)) },
    { weight: 1, arbitrary: fc.constant(Buffer.alloc(oversized, 0x7b)) },
  );
  const auth = fc.oneof(
    fc.constant(["authorization", `Bearer ${apiKey}`] as [string, string]),
    headerValue.map((v) => ["authorization", v] as [string, string]),
  );
  return fc.record({
    method: fc.oneof(
      { weight: 6, arbitrary: fc.constantFrom("POST", "GET") },
      { weight: 2, arbitrary: fc.constantFrom("PUT", "DELETE", "OPTIONS", "PATCH") },
      { weight: 1, arbitrary: token },
    ),
    path: fc.oneof(
      { weight: 6, arbitrary: fc.constantFrom(...paths) },
      { weight: 1, arbitrary: fc.webPath() },
    ),
    headers: fc.array(
      fc.oneof(
        auth,
        fc.constant(["content-type", "application/json"] as [string, string]),
        fc.tuple(token, headerValue),
      ),
      { maxLength: 4 },
    ),
    body,
    framing: fc.constantFrom("length", "length", "chunked", "short-length"),
    ending: fc.constantFrom<Ending>(
      "complete",
      "complete",
      "complete",
      "abort-after-headers",
      "abort-mid-body",
      "abort-after-body",
      "garbage",
    ),
  });
}

function encode(i: Input): { head: Buffer; body: Buffer } {
  const lines = [`${i.method} ${i.path} HTTP/1.1`, "Host: 127.0.0.1", "Connection: close"];
  for (const [k, v] of i.headers)
    if (!/^(host|content-length|transfer-encoding|connection|expect|upgrade)$/i.test(k))
      lines.push(`${k}: ${v}`);
  if (i.framing === "chunked") lines.push("Transfer-Encoding: chunked");
  // A length larger than the body sent: the server waits for bytes that never come.
  else lines.push(`Content-Length: ${i.body.length + (i.framing === "short-length" ? 100 : 0)}`);
  const head = Buffer.from(`${lines.join("\r\n")}\r\n\r\n`, "latin1");
  const body =
    i.framing === "chunked"
      ? Buffer.concat([
          ...(i.body.length > 0
            ? [Buffer.from(`${i.body.length.toString(16)}\r\n`), i.body, Buffer.from("\r\n")]
            : []),
          Buffer.from("0\r\n\r\n"),
        ])
      : i.body;
  return { head, body };
}

/** Send the request and cut the connection at once (the shape of the issue-14 crash). */
function sendAndAbort(url: string, bytes: Buffer): Promise<void> {
  return new Promise((resolve) => {
    const socket = connect(url);
    socket.on("error", () => undefined);
    socket.once("close", () => resolve());
    socket.write(bytes, () => socket.destroy());
    // A server that stopped reading leaves the write pending: cut anyway.
    setTimeout(() => socket.destroy(), 200).unref();
  });
}

const HEALTH = { enroll: "/v1/health", api: "/health" } as const;

/**
 * One input against `url`; the assertion failures name it. An input that got
 * no answer (cut by this client, as in the issue-14 crash, or closed by the
 * router) must leave the port answering the next request.
 */
async function attempt(url: string, port: "enroll" | "api", i: Input): Promise<void> {
  const what = `${i.ending} ${i.method} ${i.path} (${i.framing}, ${i.body.length} body bytes)`;
  const answered = await send(url, port, i, what);
  if (!answered)
    assert.equal(await getStatus(url, HEALTH[port]), 200, `${what}: the port answers afterwards`);
}

/** Send one input; false when it got no answer. */
async function send(url: string, port: "enroll" | "api", i: Input, what: string): Promise<boolean> {
  const { head, body } = encode(i);
  if (i.ending === "garbage") {
    const a = await exchange(url, Buffer.concat([i.body, Buffer.from("\r\n\r\n")]), {
      end: true,
      timeoutMs: 30_000,
    });
    if (a === "closed") return false;
    assert.ok(a.status >= 400 && a.status < 500, `${what}: garbage answered ${a.status}`);
    return true;
  }
  if (i.ending !== "complete") {
    const cut = {
      "abort-after-headers": 10,
      "abort-mid-body": Math.max(1, body.length >> 1),
      "abort-after-body": body.length,
    }[i.ending];
    await sendAndAbort(url, Buffer.concat([head, body.subarray(0, cut)]));
    return false;
  }
  // Half-close after the request: a short length then ends as an aborted body, never a hang.
  const a = await exchange(url, Buffer.concat([head, body]), { end: true, timeoutMs: 30_000 });
  if (a === "closed") return false;
  assert.ok(
    a.status < 500 || (port === "api" && a.status === 503),
    `${what}: answered ${a.status}: ${a.body.slice(0, 300)}`,
  );
  return true;
}

for (const insecureHttp of [false, true]) {
  describe(`fuzz: a router's enrollment and API ports (${insecureHttp ? "--insecure-http" : "HTTPS"})`, {
    timeout: fuzzTimeoutMs(2),
  }, () => {
    let router: RouterChild;
    let apiKey: string;
    let rssBefore = 0;
    const tried: Record<string, number> = {};

    before(async () => {
      // Short slow-client limits so that inputs that stop mid-request end quickly.
      router = await startRouterChild({
        insecureHttp,
        env: {
          XEROTIER_AGENT_LOG_LEVEL: "info",
          XEROTIER_AGENT_HTTP_HEADERS_TIMEOUT_MS: "2000",
          XEROTIER_AGENT_HTTP_BODY_IDLE_TIMEOUT_MS: "2000",
        },
      });
      const store = await RouterStore.open(router.stateDir);
      try {
        apiKey = createApiKey(store, { project: "default", tenant: "fuzz" }).key;
      } finally {
        store.close();
      }
      // Warm up (TLS, JIT, first allocations) before the memory baseline.
      for (let i = 0; i < 20; i++) await getStatus(router.enrollUrl, "/v1/health");
      rssBefore = router.rssBytes();
    });
    after(async () => {
      await router?.stop();
    });

    for (const port of ["enroll", "api"] as const) {
      test(`${port === "enroll" ? "enrollment" : "API"} port: random, malformed, oversized and aborted requests for ${FUZZ_SECONDS} s`, async () => {
        const url = port === "enroll" ? router.enrollUrl : router.httpUrl;
        let runs = 0;
        await fuzz(
          fc.asyncProperty(inputs(port, apiKey), async (i) => {
            runs++;
            await attempt(url, port, i);
            assert.ok(router.alive(), `the router exited: ${router.proc.stderr.slice(-3000)}`);
          }),
        );
        tried[port] = runs;
        assert.ok(runs > 0, "no input was tried");
      });
    }

    test("afterwards the router answers on both ports and its memory stayed bounded", async (t) => {
      assert.ok(router.alive(), `the router exited: ${router.proc.stderr.slice(-3000)}`);
      assert.equal(await getStatus(router.enrollUrl, HEALTH.enroll), 200);
      assert.equal(await getStatus(router.httpUrl, HEALTH.api), 200);
      const rss = router.rssBytes();
      t.diagnostic(
        `inputs: ${JSON.stringify(tried)}; RSS ${Math.round(rssBefore / 2 ** 20)} -> ${Math.round(rss / 2 ** 20)} MiB`,
      );
      assert.ok(
        rss - rssBefore < RSS_GROWTH_LIMIT,
        `RSS grew from ${rssBefore} to ${rss} bytes (limit: +${RSS_GROWTH_LIMIT})`,
      );
      assert.doesNotMatch(
        router.proc.stderr,
        /"level":"(error|fatal)"/,
        "no error logged for a client's input",
      );
    });
  });
}
