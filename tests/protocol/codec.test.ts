import assert from "node:assert/strict";
import { describe, test } from "node:test";
import fc from "fast-check";
import { Packr } from "msgpackr";
import {
  decodeNodeMessage,
  decodeRouterMessage,
  encodeMessage,
  MAX_MESSAGE_BYTES,
} from "../../src/protocol/codec.ts";
import {
  NODE_MESSAGE_TYPES,
  type NodeMessage,
  type Outgoing,
  ROUTER_MESSAGE_TYPES,
  type RouterMessage,
} from "../../src/protocol/messages.ts";
import { PROTOCOL_VERSION, upgradeSide, versionMismatchMessage } from "../../src/protocol/version.ts";

const lease = { leaseId: "a".repeat(32), epoch: 3 };
const status = {
  engine: "ready" as const,
  models: ["qwen"],
  maxConcurrent: 4,
  freeSlots: 2,
  state: "ready" as const,
  conditions: [
    {
      condition: "gpu_throttled",
      severity: "degraded" as const,
      since: 1_765_000_000_000,
      message: "GPU 0 is throttled: hardware slowdown (power brake)",
      fix: "check the power supply and cooling of GPU 0",
    },
  ],
};

/** One valid example of every node -> router message type. */
export const nodeExamples: Outgoing<NodeMessage>[] = [
  {
    type: "register",
    nodeId: `node_${"0".repeat(24)}`,
    lastEpoch: 0,
    nonce: "b".repeat(32),
    challenge: "d".repeat(32),
    proof: "c".repeat(64),
    controlRoutingId: `c.${"1".repeat(32)}`,
    streamingRoutingId: `s.${"2".repeat(32)}`,
    agentVersion: "0.1.0",
    hardware: {
      hostname: "h",
      platform: "linux",
      arch: "x64",
      cpus: 2,
      memoryBytes: 1 << 30,
      gpus: [{ name: "H100", memoryBytes: 80e9 }],
    },
    ...status,
    requestedLeaseMs: 30000,
    renewalIntervalMs: 10000,
    windowBytes: 65536,
  },
  { type: "lease_renew", ...lease, seq: 7, ...status },
  {
    type: "node_status",
    ...lease,
    ...status,
    detail: { reason: "oom", message: "out of memory", exitCode: 1, logTail: ["x"] },
  },
  { type: "drain", ...lease, reason: "SIGTERM", graceMs: 30000 },
  { type: "lease_release", ...lease },
  { type: "ping", nonce: "d".repeat(32), sentAtMs: 1 },
  { type: "stream_start", requestId: "r1", status: 200, contentType: "text/event-stream" },
  { type: "chunk", requestId: "r1", seq: 0, data: new Uint8Array([100, 97, 116, 97]) },
  {
    type: "stream_end",
    requestId: "r1",
    seq: 1,
    usage: { promptTokens: 3, completionTokens: 5 },
    finishReason: "stop",
  },
  {
    type: "stream_error",
    requestId: "r1",
    seq: 2,
    code: "stalled",
    message: "no credit for 30 s",
    status: 504,
  },
  {
    type: "dispatch_refused",
    requestId: "r1",
    code: "duplicate_request",
    message: "a stream with request id r1 already runs on this node",
  },
  {
    type: "model_request",
    request: {
      type: "model_chunk_request",
      requestId: "m1",
      name: "tiny",
      path: "model.safetensors",
      offset: 0,
      length: 4,
      receipts: ["cd".repeat(16)],
    },
  },
  {
    type: "model_progress",
    ...lease,
    assignmentId: "as_0123456789abcdef",
    name: "tiny",
    state: "pulling",
    bytesDone: 1024,
    bytesTotal: 4096,
  },
];

export const routerExamples: Outgoing<RouterMessage>[] = [
  {
    type: "register_ack",
    nodeId: `node_${"0".repeat(24)}`,
    ...lease,
    leaseDurationMs: 30000,
    renewalIntervalMs: 10000,
    routerVersion: "0.1.0",
  },
  {
    type: "register_refused",
    code: "version_mismatch",
    message: "upgrade",
    upgrade: "node",
    routerProtocolVersion: 1,
  },
  { type: "register_challenge", challenge: "e".repeat(32), expiresInMs: 30000 },
  { type: "lease_ack", ...lease, seq: 7, expiresInMs: 30000 },
  { type: "lease_refused", ...lease, code: "fenced", message: "newer epoch", currentEpoch: 4 },
  { type: "pong", nonce: "d".repeat(32), sentAtMs: 1 },
  {
    type: "dispatch",
    requestId: "r1",
    ...lease,
    project: "p",
    tenant: "t",
    model: "qwen",
    path: "/v1/chat/completions",
    stream: true,
    body: new TextEncoder().encode('{"messages":[]}'),
    windowBytes: 65536,
    deadlineMs: 1800000,
  },
  { type: "cancel", requestId: "r1", reason: "client disconnected" },
  { type: "drain_request", reason: "maintenance", graceMs: 1000 },
  { type: "credit", requestId: "r1", bytes: 32768 },
  {
    type: "model_reply",
    reply: {
      type: "model_chunk",
      requestId: "m1",
      name: "tiny",
      path: "model.safetensors",
      offset: 0,
      data: new Uint8Array([1, 2, 3, 4]),
      sha256: "9f".repeat(32),
      receipt: "ab".repeat(16),
    },
  },
  { type: "model_assign", assignmentId: "as_0123456789abcdef", name: "tiny" },
  { type: "model_unassign", assignmentId: "as_0123456789abcdef" },
  { type: "node_revoked", nodeId: `node_${"a".repeat(24)}`, message: "revoked by the operator" },
];

function normalise(value: unknown): unknown {
  return JSON.parse(
    JSON.stringify(value, (_k, v) =>
      v instanceof Uint8Array || (v && v.type === "Buffer") ? [...(v.data ?? v)] : v,
    ),
  );
}

describe("every message type round-trips through MessagePack and the shared schemas", () => {
  test("the examples cover every type in both directions", () => {
    assert.deepEqual(nodeExamples.map((m) => m.type).sort(), [...NODE_MESSAGE_TYPES].sort());
    assert.deepEqual(routerExamples.map((m) => m.type).sort(), [...ROUTER_MESSAGE_TYPES].sort());
  });
  for (const m of nodeExamples) {
    test(`node -> router: ${m.type}`, () => {
      const r = decodeNodeMessage(encodeMessage(m));
      assert.ok(r.ok, r.ok ? "" : r.detail);
      assert.deepEqual(normalise(r.message), normalise({ v: PROTOCOL_VERSION, ...m }));
      assert.equal(decodeRouterMessage(encodeMessage(m)).ok, false, "a node message is not a router message");
    });
  }
  for (const m of routerExamples) {
    test(`router -> node: ${m.type}`, () => {
      const r = decodeRouterMessage(encodeMessage(m));
      assert.ok(r.ok, r.ok ? "" : r.detail);
      assert.deepEqual(normalise(r.message), normalise({ v: PROTOCOL_VERSION, ...m }));
    });
  }
});

describe("bad frames are reported, never thrown", () => {
  const packr = new Packr({ useRecords: false });
  test("unknown type", () => {
    const r = decodeNodeMessage(packr.pack({ v: PROTOCOL_VERSION, type: "launch_missiles" }));
    assert.deepEqual([r.ok, !r.ok && r.reason], [false, "unknown_type"]);
  });
  test("oversized frame", () => {
    const r = decodeNodeMessage(new Uint8Array(MAX_MESSAGE_BYTES + 1));
    assert.deepEqual([r.ok, !r.ok && r.reason], [false, "oversized"]);
  });
  test("another protocol version names the version and the type", () => {
    const r = decodeNodeMessage(packr.pack({ v: PROTOCOL_VERSION + 1, type: "register" }));
    assert.ok(!r.ok);
    assert.equal(r.reason, "version");
    assert.equal(r.peerVersion, PROTOCOL_VERSION + 1);
    assert.equal(r.type, "register");
  });
  test("a known type with a wrong field names the field", () => {
    const r = decodeNodeMessage(
      packr.pack({ v: PROTOCOL_VERSION, type: "chunk", requestId: "r", seq: -1, data: new Uint8Array() }),
    );
    assert.ok(!r.ok);
    assert.equal(r.reason, "invalid");
    assert.match(r.detail, /seq/);
  });
  test("empty frame, trailing bytes, non-map values", () => {
    assert.equal(decodeNodeMessage(new Uint8Array()).ok, false);
    assert.equal(
      decodeNodeMessage(Buffer.concat([encodeMessage(nodeExamples[5]), Buffer.from([0])])).ok,
      false,
    );
    for (const value of [1, "x", [1, 2], null, true, new Uint8Array([1])])
      assert.equal(decodeRouterMessage(packr.pack(value)).ok, false);
  });

  test("property: random bytes never throw in either decoder", () => {
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 512 }), (bytes) => {
        for (const decode of [decodeNodeMessage, decodeRouterMessage]) {
          const r = decode(bytes);
          assert.equal(typeof r.ok, "boolean");
        }
      }),
      { numRuns: 3000 },
    );
  });

  test("property: random MessagePack maps with real type names never throw and never validate garbage", () => {
    const types = [...NODE_MESSAGE_TYPES, ...ROUTER_MESSAGE_TYPES, "nope"];
    fc.assert(
      fc.property(
        fc.record({
          v: fc.oneof(fc.constant(PROTOCOL_VERSION), fc.integer()),
          type: fc.constantFrom(...types),
        }),
        fc.dictionary(fc.string({ maxLength: 12 }), fc.jsonValue({ maxDepth: 2 }), { maxKeys: 8 }),
        (head, rest) => {
          const bytes = packr.pack({ ...rest, ...head });
          for (const decode of [decodeNodeMessage, decodeRouterMessage]) {
            const r = decode(bytes);
            if (r.ok) assert.equal(r.message.type, head.type);
          }
        },
      ),
      { numRuns: 1500 },
    );
  });

  test("property: mutated valid messages never throw", () => {
    const frames = [...nodeExamples, ...routerExamples].map((m) => encodeMessage(m));
    fc.assert(
      fc.property(
        fc.constantFrom(...frames),
        fc.array(fc.tuple(fc.nat(), fc.integer({ min: 0, max: 255 })), { maxLength: 6 }),
        (frame, edits) => {
          const copy = Buffer.from(frame);
          for (const [at, value] of edits) copy[at % copy.length] = value;
          decodeNodeMessage(copy);
          decodeRouterMessage(copy);
        },
      ),
      { numRuns: 2000 },
    );
  });
});

describe("version mismatch wording says which side to upgrade", () => {
  test("an older node is told to upgrade the node", () => {
    assert.equal(upgradeSide(1, 2), "node");
    assert.match(versionMismatchMessage(1, 2), /upgrade the node/);
  });
  test("an older router is told to upgrade the router", () => {
    assert.equal(upgradeSide(3, 2), "router");
    assert.match(versionMismatchMessage(3, 2), /upgrade the router/);
  });
});
