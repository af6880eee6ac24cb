/**
 * Fuzz of the router's relay state machine from the node's side: an
 * enrolled node (a real session over CURVE ZeroMQ, no engine) answers each
 * dispatch with a random script of schema-valid stream messages: starts
 * with any status and content type, chunks of random bytes with right,
 * repeated or skipped `seq`, ends and errors with any code and status,
 * messages for other request ids, in any order. Whatever the node sends,
 * the HTTP client gets an answer that ends, the router logs no handler
 * failure, nothing is rejected unhandled, and when the scripts are done no
 * stream and no slot stays taken at the router.
 */
import assert from "node:assert/strict";
import { mkdtempSync, rmSync } from "node:fs";
import http from "node:http";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { Writable } from "node:stream";
import { after, before, describe, test } from "node:test";
import fc from "fast-check";
import { runNode } from "../../src/agent/session.ts";
import { loadConfig } from "../../src/core/config/load.ts";
import { createLogger, silentLogger } from "../../src/core/log.ts";
import type { NodeMessage, Outgoing, RouterMessage } from "../../src/protocol/messages.ts";
import { STREAM_ERROR_CODES } from "../../src/protocol/messages.ts";
import { createApiKey } from "../../src/router/api-keys.ts";
import { createJoinKey } from "../../src/router/join-keys.ts";
import { type RouterService, startRouterService } from "../../src/router/service.ts";
import { waitFor } from "../router/harness.ts";

type Step =
  | { kind: "start"; status: number; contentType: string; windowBytes?: number }
  | { kind: "chunk"; seqDelta: number; data: Uint8Array }
  | { kind: "end"; seqDelta: number }
  | { kind: "error"; code: (typeof STREAM_ERROR_CODES)[number]; status: number; message: string }
  | { kind: "stranger"; data: Uint8Array };

const sse = fc
  .array(fc.constantFrom('data: {"x":1}\n\n', "data: [DONE]\n\n", "data: {", "}\n\n", "\n", "x"), {
    maxLength: 4,
  })
  .map((parts) => new TextEncoder().encode(parts.join("")));
const step: fc.Arbitrary<Step> = fc.oneof(
  fc.record({
    kind: fc.constant("start" as const),
    status: fc.oneof(fc.constantFrom(200, 200, 400, 404, 500, 503), fc.integer({ min: 100, max: 599 })),
    contentType: fc.oneof(
      fc.constantFrom("text/event-stream; charset=utf-8", "application/json", "text/plain", ""),
      fc.constantFrom(
        "text/plain\r\nx-injected: 1",
        "t\u00ebxt/\u00fcn\u00efcode",
        "text/\u4e2d",
        "a\u0000b",
      ),
      fc.string({ maxLength: 30 }),
    ),
    windowBytes: fc.option(fc.constantFrom(0, 1, 100, 65536), { nil: undefined }),
  }),
  fc.record({
    kind: fc.constant("chunk" as const),
    seqDelta: fc.constantFrom(0, 0, 0, 0, 1, -1, 7),
    data: fc.oneof(sse, fc.uint8Array({ minLength: 1, maxLength: 64 })),
  }),
  fc.record({ kind: fc.constant("end" as const), seqDelta: fc.constantFrom(0, 0, 3) }),
  fc.record({
    kind: fc.constant("error" as const),
    code: fc.constantFrom(...STREAM_ERROR_CODES),
    status: fc.integer({ min: 400, max: 599 }),
    message: fc.string({ maxLength: 40 }),
  }),
  fc.record({ kind: fc.constant("stranger" as const), data: fc.uint8Array({ minLength: 1, maxLength: 16 }) }),
);
/** A script ends with a terminal message: a node that never answers is the deadline's business. */
const script = fc.tuple(
  fc.array(step, { maxLength: 6 }),
  fc.oneof(
    fc.record({ kind: fc.constant("end" as const), seqDelta: fc.constant(0) }),
    fc.record({
      kind: fc.constant("error" as const),
      code: fc.constantFrom(...STREAM_ERROR_CODES),
      status: fc.integer({ min: 400, max: 599 }),
      message: fc.string({ maxLength: 40 }),
    }),
  ),
);

interface Reply {
  status: number | undefined;
  body: Buffer;
  error: string | undefined;
}

function request(port: number, key: string, stream: boolean): Promise<Reply> {
  return new Promise((resolve, reject) => {
    const parts: Buffer[] = [];
    let status: number | undefined;
    const timer = setTimeout(() => {
      req.destroy();
      reject(new Error(`no end within 5 s (status ${status}, ${Buffer.concat(parts).length} bytes)`));
    }, 5_000);
    const done = (error?: string) => {
      clearTimeout(timer);
      resolve({ status, body: Buffer.concat(parts), error });
    };
    const req = http.request({
      host: "127.0.0.1",
      port,
      path: "/v1/chat/completions",
      method: "POST",
      headers: { authorization: `Bearer ${key}`, "content-type": "application/json" },
    });
    req.on("error", (err) => done(err.message));
    req.on("response", (res) => {
      status = res.statusCode;
      res.on("data", (d: Buffer) => parts.push(d));
      res.on("end", () => done());
      res.on("error", (err) => done(err.message));
    });
    req.end(JSON.stringify({ model: "evil", stream, messages: [{ role: "user", content: "x" }] }));
  });
}

describe("fuzz: stream messages from a node, against the router's relay", { timeout: 240_000 }, () => {
  const dir = mkdtempSync(join(tmpdir(), "xim-fuzz-relay-"));
  const logLines: string[] = [];
  const rejections: unknown[] = [];
  const onRejection = (reason: unknown) => rejections.push(reason);
  let service: RouterService;
  let port: number;
  let key: string;
  let nodeId: string;
  const stop = new AbortController();
  let nodeDone: Promise<unknown> = Promise.resolve();
  let current: [Step[], Step] = [[], { kind: "end", seqDelta: 0 }];
  let scripted = 0;
  const tried: Record<string, number> = {};

  before(async () => {
    process.on("unhandledRejection", onRejection);
    const destination = new Writable({
      write(chunk, _enc, cb) {
        logLines.push(...String(chunk).split("\n").filter(Boolean));
        cb();
      },
    });
    service = await startRouterService({
      stateDir: join(dir, "router"),
      enrollListen: { host: "127.0.0.1", port: 0 },
      controlBind: "tcp://127.0.0.1:0",
      streamingBind: "tcp://127.0.0.1:0",
      http: { host: "127.0.0.1", port: 0 },
      logger: createLogger({ level: "info", destination }),
    });
    port = Number(new URL(service.endpoints.httpUrl as string).port);
    key = createApiKey(service.store, { project: "default", tenant: "fuzz" }).key;
    const join_ = createJoinKey(service.store, service.identity, {
      project: "default",
      uses: 1,
      ttlMs: null,
      labels: {},
    });
    const { config } = loadConfig({
      env: {
        XEROTIER_AGENT_CONFIG_DIR: join(dir, "node"),
        XEROTIER_AGENT_JOIN_KEY: join_.key,
        XEROTIER_AGENT_LEASE_RENEWAL_INTERVAL_MS: "200",
        XEROTIER_AGENT_LEASE_DURATION_MS: "5000",
      },
      cwd: dir,
    });
    nodeDone = runNode({
      config,
      logger: silentLogger(),
      signal: stop.signal,
      status: () => ({ engine: "ready", models: ["evil"], maxConcurrent: 4, freeSlots: 4 }),
      onMessage: (m: RouterMessage, session) => {
        if (m.type !== "dispatch") return;
        const [steps, last] = current;
        scripted++;
        const send = (msg: Outgoing<NodeMessage>) => session.send(msg);
        void (async () => {
          let seq = 0;
          for (const s of [...steps, last]) {
            const id = m.requestId;
            if (s.kind === "start")
              await send({
                type: "stream_start",
                requestId: id,
                status: s.status,
                contentType: s.contentType,
                ...(s.windowBytes !== undefined ? { windowBytes: s.windowBytes } : {}),
              });
            else if (s.kind === "chunk") {
              const use = Math.max(0, seq + (s.seqDelta === 0 ? 0 : s.seqDelta));
              await send({ type: "chunk", requestId: id, seq: use, data: s.data as Uint8Array<ArrayBuffer> });
              seq = use + 1;
            } else if (s.kind === "end")
              await send({ type: "stream_end", requestId: id, seq: seq + s.seqDelta });
            else if (s.kind === "error")
              await send({
                type: "stream_error",
                requestId: id,
                seq,
                code: s.code,
                status: s.status,
                message: s.message,
              });
            else
              await send({
                type: "chunk",
                requestId: `stranger-${scripted}`,
                seq: 0,
                data: s.data as Uint8Array<ArrayBuffer>,
              });
          }
        })();
      },
    }).catch((err: unknown) => err);
    const lease = await waitFor(
      () => service.controlPlane.readyLeases().find((l) => l.status.models.includes("evil")),
      { timeoutMs: 20_000, what: "the scripted node to be ready" },
    );
    nodeId = lease.nodeId;
  });

  after(async () => {
    process.off("unhandledRejection", onRejection);
    stop.abort();
    await nodeDone;
    await service?.close();
    rmSync(dir, { recursive: true, force: true });
  });

  test("whatever the node sends, the client's answer ends and the router stays whole", async (t) => {
    const statuses: Record<string, number> = {};
    await fc.assert(
      fc.asyncProperty(script, fc.boolean(), async (s, stream) => {
        current = s;
        const strayBefore = service.relay.dropped.unknownStream;
        // request() fails the property when the answer does not end.
        const reply = await request(port, key, stream);
        const k = reply.error ? "connection closed" : String(reply.status);
        statuses[k] = (statuses[k] ?? 0) + 1;
        const steps = [...s[0], s[1]];
        const first = steps.find((step) => step.kind !== "stranger");
        if (first?.kind === "chunk" || first?.kind === "end") {
          // Bytes or an end before any stream_start: the router's own relay_error, never the node's bytes.
          assert.equal(reply.status, 502, `${first.kind} before stream_start`);
          assert.equal(JSON.parse(reply.body.toString()).error.code, "relay_error");
        }
        // Every message for a stream the router does not hold is refused and counted, never delivered;
        // and each script releases its stream and its node slot (no leak adds up over the run).
        const strays = steps.filter((step) => step.kind === "stranger").length;
        await waitFor(
          () =>
            service.relay.dropped.unknownStream - strayBefore >= strays &&
            service.relay.active === 0 &&
            service.scheduler.inflight(nodeId) === 0,
          {
            // The bound only stops a broken run; the condition decides. Polled often: 2000 inputs.
            timeoutMs: 15_000,
            intervalMs: 2,
            what: `${strays} stray messages counted and no stream or node slot left`,
          },
        );
      }),
      { numRuns: 2000 },
    );
    tried.scripts = scripted;
    assert.deepEqual(rejections, []);
    const failures = logLines.filter((l) =>
      /request handler failed|uncaught|unhandled|"level":"(error|fatal)"/i.test(l),
    );
    assert.deepEqual(failures, []);
    t.diagnostic(`${scripted} scripted streams; client saw ${JSON.stringify(statuses)}`);
  });

  test("a well-formed stream cut into random chunks reaches the client byte for byte", async (t) => {
    let runs = 0;
    await fc.assert(
      fc.asyncProperty(
        fc.array(
          fc.string({ maxLength: 30 }).map((x) => `data: ${JSON.stringify({ x })}\n\n`),
          { maxLength: 12 },
        ),
        fc.array(fc.nat(), { maxLength: 8 }),
        fc.boolean(),
        async (events, cuts, stream) => {
          runs++;
          const whole = Buffer.from(events.join(""));
          const points = [...new Set(cuts.map((c) => (whole.length ? c % whole.length : 0)))].sort(
            (a, b) => a - b,
          );
          const pieces: Step[] = [];
          let from = 0;
          for (const p of [...points, whole.length])
            if (p > from) {
              pieces.push({ kind: "chunk", seqDelta: 0, data: whole.subarray(from, p) });
              from = p;
            }
          const contentType = stream ? "text/event-stream; charset=utf-8" : "application/json";
          current = [[{ kind: "start", status: 200, contentType }, ...pieces], { kind: "end", seqDelta: 0 }];
          const reply = await request(port, key, stream);
          assert.equal(reply.status, 200);
          assert.equal(reply.error, undefined);
          assert.deepEqual(reply.body, whole);
        },
      ),
      { numRuns: 1000 },
    );
    tried.wellFormed = runs;
    t.diagnostic(`relay fuzz: ${tried.scripts} random scripts, ${runs} well-formed streams cut at random`);
  });
});
