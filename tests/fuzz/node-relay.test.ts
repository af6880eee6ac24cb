/**
 * Fuzz of the node's relay (src/agent/relay.ts) from the router's side:
 * random sequences of schema-valid router messages (dispatches with bodies
 * that are not JSON, not objects, or wrong for the engine; windows from 0
 * to large, short deadlines; duplicate ids; cancels, credits for streams
 * that exist and that do not, a drain request) against a relay running a
 * real simulated engine (an HTTP server in this process). This test plays
 * the router: it returns credit for the bytes it receives. Every
 * dispatched request must get exactly one terminal message, after at most
 * one stream_start, with its chunks numbered from 0 without a gap; no
 * handler may throw; afterwards nothing is in flight and no credit is held.
 */
import assert from "node:assert/strict";
import { after, before, describe, test } from "node:test";
import fc from "fast-check";
import { Relay } from "../../src/agent/relay.ts";
import { silentLogger } from "../../src/core/log.ts";
import { Secret } from "../../src/core/secret.ts";
import { SimulatedEngine } from "../../src/engine/simulated-engine.ts";
import type { NodeMessage, Outgoing, RouterMessage } from "../../src/protocol/messages.ts";
import { waitFor } from "../router/harness.ts";

type Op =
  | { op: "dispatch"; id: number; body: string; stream: boolean; window: number; deadline: number }
  | { op: "cancel"; id: number }
  | { op: "credit"; id: number; bytes: number }
  | { op: "drain" }
  | { op: "pause"; ms: number };

const bodies = fc.oneof(
  fc.constant(JSON.stringify({ model: "sim-model", messages: [{ role: "user", content: "hi" }] })),
  fc.constant(JSON.stringify({ model: "sim-model", prompt: "once", max_tokens: 3 })),
  fc.constant(JSON.stringify({ model: "other", messages: [] })),
  fc.constant(JSON.stringify({ model: "sim-model", max_tokens: 40, ignore_eos: true, prompt: "x" })),
  fc.jsonValue({ maxDepth: 2 }).map((v) => JSON.stringify(v) ?? "null"),
  fc.string({ maxLength: 40 }),
);
const op: fc.Arbitrary<Op> = fc.oneof(
  {
    weight: 5,
    arbitrary: fc.record({
      op: fc.constant("dispatch" as const),
      id: fc.integer({ min: 0, max: 5 }),
      body: bodies,
      stream: fc.boolean(),
      window: fc.constantFrom(0, 1, 64, 300, 65536, 1 << 30),
      deadline: fc.constantFrom(0, 0, 0, 1, 20),
    }),
  },
  {
    weight: 2,
    arbitrary: fc.record({ op: fc.constant("cancel" as const), id: fc.integer({ min: 0, max: 7 }) }),
  },
  {
    weight: 2,
    arbitrary: fc.record({
      op: fc.constant("credit" as const),
      id: fc.integer({ min: 0, max: 7 }),
      bytes: fc.constantFrom(0, 1, 100, 1 << 20, 2 ** 31),
    }),
  },
  { weight: 1, arbitrary: fc.record({ op: fc.constant("drain" as const) }) },
  {
    weight: 2,
    arbitrary: fc.record({ op: fc.constant("pause" as const), ms: fc.integer({ min: 0, max: 15 }) }),
  },
);

interface StreamLog {
  starts: number;
  chunks: number[];
  terminal: Array<Outgoing<NodeMessage>>;
  /** Dispatches refused because the id was running (dispatch_refused): not an end of that stream. */
  refused: number;
}

describe("fuzz: router messages against the node's relay", { timeout: 240_000 }, () => {
  const engine = new SimulatedEngine({ model: "sim-model", outputTokens: 6, itlMs: 0 });
  const rejections: unknown[] = [];
  const onRejection = (reason: unknown) => rejections.push(reason);

  before(async () => {
    process.on("unhandledRejection", onRejection);
    await engine.start();
    await engine.waitReady();
  });
  after(async () => {
    process.off("unhandledRejection", onRejection);
    await engine.stop(1000);
  });

  test("every dispatch ends exactly once, in order, and nothing stays held", async (t) => {
    let runs = 0;
    let messages = 0;
    let round = 0;
    await fc.assert(
      fc.asyncProperty(fc.array(op, { minLength: 1, maxLength: 12 }), async (ops) => {
        runs++;
        round++;
        const logs = new Map<string, StreamLog>();
        const log = (id: string) => {
          let l = logs.get(id);
          if (!l) {
            l = { starts: 0, chunks: [], terminal: [], refused: 0 };
            logs.set(id, l);
          }
          return l;
        };
        let relay: Relay | undefined;
        relay = new Relay({
          engine: () => engine,
          send: async (m) => {
            messages++;
            if (!("requestId" in m)) return true;
            const l = log(m.requestId);
            if (m.type === "stream_start") l.starts++;
            else if (m.type === "chunk") {
              l.chunks.push(m.seq);
              // The router took the bytes: return the credit, as a client that reads does.
              const bytes = m.data.byteLength;
              const r = relay;
              setImmediate(() =>
                r?.handle({ type: "credit", requestId: m.requestId, bytes } as RouterMessage),
              );
            } else if (m.type === "dispatch_refused") l.refused++;
            else l.terminal.push(m);
            return true;
          },
          flow: {
            flowControlEnabled: true,
            flowControlWindowBytes: 65536,
            flowControlReplenishThreshold: 0.5,
            flowControlPauseThresholdBytes: 262144,
            flowControlTimeoutSeconds: 5,
          },
          maxConcurrent: 3,
          saltSecret: new Secret("fuzz-salt-secret"),
          logger: silentLogger(),
        });
        const dispatched = new Set<string>();
        const rid = (n: number) => `r${round}-${n}`;
        for (const o of ops) {
          if (o.op === "dispatch") {
            dispatched.add(rid(o.id));
            relay.handle({
              v: 1,
              type: "dispatch",
              requestId: rid(o.id),
              leaseId: "a".repeat(32),
              epoch: 1,
              project: "p",
              tenant: "t",
              model: "sim-model",
              path: o.stream ? "/v1/chat/completions" : "/v1/completions",
              stream: o.stream,
              body: new TextEncoder().encode(o.body) as Uint8Array<ArrayBuffer>,
              windowBytes: o.window,
              deadlineMs: o.deadline,
            } as RouterMessage);
          } else if (o.op === "cancel")
            relay.handle({ v: 1, type: "cancel", requestId: rid(o.id), reason: "fuzz" } as RouterMessage);
          else if (o.op === "credit")
            relay.handle({ v: 1, type: "credit", requestId: rid(o.id), bytes: o.bytes } as RouterMessage);
          else if (o.op === "drain")
            relay.handle({ v: 1, type: "drain_request", reason: "fuzz", graceMs: 1000 } as RouterMessage);
          else await new Promise((r) => setTimeout(r, o.ms));
        }
        // A duplicate of a running request is refused apart; one dispatched again after its end runs again.
        await waitFor(() => relay.inFlight === 0, { timeoutMs: 10_000, what: "every stream to end" });
        await new Promise((r) => setImmediate(r));
        for (const id of dispatched) {
          const l = log(id);
          assert.ok(l.terminal.length >= 1, `${id}: a terminal message`);
          // Each run of the id (it may be dispatched again after it ended) ends once: no more ends than starts+rejections.
          for (const m of l.terminal) assert.ok(m.type === "stream_end" || m.type === "stream_error");
          assert.ok(l.starts <= l.terminal.length, `${id}: ${l.starts} starts for ${l.terminal.length} ends`);
          if (l.terminal.length === 1) {
            assert.deepEqual(
              l.chunks,
              l.chunks.map((_, i) => i),
              `${id}: chunks numbered from 0 without a gap`,
            );
            const end = l.terminal[0] as { seq: number };
            assert.equal(end.seq, l.chunks.length, `${id}: the terminal message counts the chunks`);
          }
        }
        assert.equal(relay.ledger.unackedBytes, 0, "no credit held");
      }),
      { numRuns: 300 },
    );
    assert.deepEqual(rejections, []);
    t.diagnostic(`node relay: ${runs} sequences, ${messages} messages sent back, none threw`);
  });
});
