/**
 * The router's control plane in-process, with real CURVE ZeroMQ sockets on
 * loopback: the ZAP allow-list, registration proofs, fencing by epoch,
 * expiry (with an injected clock), the inference hooks, and fuzzed frames.
 */
import assert from "node:assert/strict";
import { randomBytes } from "node:crypto";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, test } from "node:test";
import fc from "fast-check";
import { Packr } from "msgpackr";
import type * as zmq from "zeromq";
import { NodeSession } from "../../src/agent/session.ts";
import { silentLogger } from "../../src/core/log.ts";
import type { EnrollmentState } from "../../src/enrollment/state.ts";
import { decodeRouterMessage, encodeMessage } from "../../src/protocol/codec.ts";
import type { NodeMessage, RouterMessage } from "../../src/protocol/messages.ts";
import { PROTOCOL_VERSION } from "../../src/protocol/version.ts";
import { ControlPlane, type Lease } from "../../src/router/control-plane.ts";
import { initRouter, loadIdentity } from "../../src/router/identity.ts";
import { RouterStore } from "../../src/router/store.ts";
import {
  type CurveKeyPair,
  curveSharedSecret,
  generateCurveKeyPair,
  registerProof,
} from "../../src/transport/curve.ts";
import { newRoutingId, openDealer } from "../../src/transport/sockets.ts";
import { enrollDirect } from "../helpers/enroll-direct.ts";
import { waitFor } from "./harness.ts";

const dir = mkdtempSync(join(tmpdir(), "xim-cp-"));
let store: RouterStore;
let cp: ControlPlane;
let routerKeys: CurveKeyPair;
let skew = 0;
const sockets: zmq.Socket[] = [];

interface TestNode {
  nodeId: string;
  keys: CurveKeyPair;
}

interface TestDealer {
  s: zmq.Dealer;
  rid: string;
}

function dealer(
  keys: CurveKeyPair,
  role: "control" | "streaming" = "control",
  routingId = newRoutingId(role),
): TestDealer {
  const endpoint = role === "control" ? cp.controlEndpoint : cp.streamingEndpoint;
  const socket = openDealer({ role, keys, serverPublicKey: routerKeys.publicKey, endpoint, routingId });
  socket.receiveTimeout = 5000;
  sockets.push(socket);
  return { s: socket, rid: routingId };
}

async function recv(d: TestDealer): Promise<RouterMessage> {
  const [frame] = await d.s.receive();
  const r = decodeRouterMessage(frame);
  assert.ok(r.ok, r.ok ? "" : r.detail);
  return r.message;
}

async function register(
  node: TestNode,
  control: TestDealer,
  streaming: TestDealer | null = null,
  leaseMs = 30_000,
) {
  const send = async (challenge: string | null) => {
    const ids = {
      nodeId: node.nodeId,
      nonce: randomBytes(16).toString("hex"),
      challenge,
      controlRoutingId: control.rid,
      streamingRoutingId: streaming?.rid ?? null,
    };
    const proof = registerProof(curveSharedSecret(node.keys, routerKeys.publicKey), ids);
    await control.s.send(
      encodeMessage({
        type: "register",
        ...ids,
        lastEpoch: 0,
        proof,
        agentVersion: "test",
        hardware: { hostname: "t", platform: "linux", arch: "x64", cpus: 1, memoryBytes: 1, gpus: [] },
        engine: "none",
        models: [],
        maxConcurrent: 2,
        freeSlots: 2,
        requestedLeaseMs: leaseMs,
        renewalIntervalMs: 100,
        windowBytes: 65536,
      }),
    );
    return recv(control);
  };
  // First round: the router answers with a challenge for the proof.
  const first = await send(null);
  return first.type === "register_challenge" ? send(first.challenge) : first;
}

async function pong(socket: TestDealer): Promise<boolean> {
  const nonce = randomBytes(16).toString("hex");
  await socket.s.send(encodeMessage({ type: "ping", nonce, sentAtMs: 1 }));
  const m = await recv(socket);
  return m.type === "pong" && m.nonce === nonce;
}

before(async () => {
  store = await RouterStore.open(join(dir, "router"));
  await initRouter(store);
  routerKeys = loadIdentity(store).curve;
  cp = await ControlPlane.start({
    store,
    keys: routerKeys,
    controlBind: "tcp://127.0.0.1:*",
    streamingBind: "tcp://127.0.0.1:*",
    logger: silentLogger(),
    now: () => Date.now() + skew,
    expiryCheckMs: 20,
  });
});

after(async () => {
  for (const s of sockets) if (!s.closed) s.close();
  await cp.close();
  store.close();
  rmSync(dir, { recursive: true, force: true });
});

describe("the router control plane", { timeout: 60_000 }, () => {
  test("a node key that never enrolled cannot complete a CURVE handshake, and the refusal is counted", async () => {
    const stranger = openDealer({
      role: "control",
      keys: generateCurveKeyPair(),
      serverPublicKey: routerKeys.publicKey,
      endpoint: cp.controlEndpoint,
    });
    sockets.push(stranger);
    stranger.receiveTimeout = 800;
    const refused = (async () => {
      for await (const event of stranger.events) if (event.type === "handshake:error:auth") return true;
      return false;
    })();
    await stranger.send(encodeMessage({ type: "ping", nonce: "0".repeat(32), sentAtMs: 1 }));
    assert.equal(await refused, true);
    await assert.rejects(stranger.receive(), /timed out|EAGAIN|Socket/i, "no pong for an unenrolled key");
    assert.ok(cp.counters.zapRefused >= 1);
    stranger.close();

    const node = enrollDirect(store, "p");
    assert.ok(await pong(dealer(node.keys)), "an enrolled key is admitted");
  });

  test("malformed, unknown and oversized frames are counted and dropped, good frames beside them still count; the router keeps answering", async () => {
    const node = enrollDirect(store, "p");
    const socket = dealer(node.keys);
    const before = { ...cp.counters };
    await fc.assert(
      fc.asyncProperty(fc.uint8Array({ minLength: 1, maxLength: 256 }), async (bytes) => {
        await socket.s.send(bytes);
      }),
      { numRuns: 300 },
    );
    await socket.s.send(
      new Packr({ useRecords: false }).pack({ v: PROTOCOL_VERSION, type: "launch_missiles" }),
    );
    // Several payload frames in one ZeroMQ message are several messages: the ping is
    // answered, the garbage frame beside it is counted as malformed.
    await socket.s.send([
      encodeMessage({ type: "ping", nonce: "1".repeat(32), sentAtMs: 1 }),
      Buffer.from("extra"),
    ]);
    const batched = await recv(socket);
    assert.equal(batched.type === "pong" && batched.nonce, "1".repeat(32));
    await socket.s.send(Buffer.alloc(16 * 1024 * 1024 + 10));
    await socket.s.send(encodeMessage({ type: "chunk", requestId: "r", seq: 0, data: new Uint8Array(3) }));
    assert.ok(await pong(socket), "still answering after the garbage");
    const grew = (k: keyof typeof cp.counters) => cp.counters[k] > before[k];
    assert.ok(
      grew("malformed") && grew("unknownType") && grew("oversized") && grew("unbound"),
      JSON.stringify(cp.counters),
    );
  });

  test("another protocol version is refused at registration, naming the side to upgrade", async () => {
    const node = enrollDirect(store, "p");
    const socket = dealer(node.keys);
    const packr = new Packr({ useRecords: false });
    await socket.s.send(packr.pack({ v: PROTOCOL_VERSION + 1, type: "register", nodeId: node.nodeId }));
    const newer = await recv(socket);
    assert.equal(newer.type, "register_refused");
    assert.ok(
      newer.type === "register_refused" && newer.code === "version_mismatch" && newer.upgrade === "router",
      JSON.stringify(newer),
    );
    await socket.s.send(packr.pack({ v: PROTOCOL_VERSION - 1, type: "register" }));
    const older = await recv(socket);
    assert.ok(older.type === "register_refused" && older.upgrade === "node");
    assert.match(older.type === "register_refused" ? older.message : "", /upgrade the node/);
  });

  test("an enrolled node cannot register as another node", async () => {
    const victim = enrollDirect(store, "p");
    const attacker = enrollDirect(store, "p");
    const socket = dealer(attacker.keys);
    // Signed with the attacker's own key, claiming the victim's id.
    const reply = await register({ nodeId: victim.nodeId, keys: attacker.keys }, socket);
    assert.ok(reply.type === "register_refused" && reply.code === "bad_proof", JSON.stringify(reply));
    assert.equal(cp.lease(victim.nodeId), undefined);
  });

  test("a newer registration fences the older connection", async () => {
    const node = enrollDirect(store, "p");
    const old = dealer(node.keys);
    const first = await register(node, old);
    assert.equal(first.type, "register_ack");
    const fresh = dealer(node.keys);
    const second = await register(node, fresh);
    assert.ok(first.type === "register_ack" && second.type === "register_ack");
    assert.ok(second.epoch > first.epoch);
    assert.equal(cp.lease(node.nodeId)?.controlRoutingId, fresh.rid);
    await old.s.send(
      encodeMessage({
        type: "lease_renew",
        leaseId: first.leaseId,
        epoch: first.epoch,
        seq: 0,
        engine: "none",
        models: [],
        maxConcurrent: 1,
        freeSlots: 1,
      }),
    );
    const refused = await recv(old);
    assert.ok(
      refused.type === "lease_refused" && refused.code === "fenced" && refused.currentEpoch === second.epoch,
      JSON.stringify(refused),
    );
    assert.equal(store.getNode(node.nodeId)?.epoch, second.epoch, "the epoch is persisted");
  });

  test("a lease without renewals expires after its duration; a late renewal is refused as expired", async () => {
    const node = enrollDirect(store, "p");
    const socket = dealer(node.keys);
    const changes: string[] = [];
    const off = cp.onLeaseChange((lease, previous) => {
      if (lease.nodeId === node.nodeId) changes.push(`${previous}->${lease.state}`);
    });
    const ack = await register(node, socket, null, 1000);
    assert.ok(ack.type === "register_ack" && ack.leaseDurationMs === 1000 && ack.renewalIntervalMs === 100);
    assert.equal(cp.lease(node.nodeId)?.state, "ready");
    skew += 1500; // the node has been silent for 1.5 lease durations
    await waitFor(() => cp.lease(node.nodeId)?.state === "expired", { timeoutMs: 5000, what: "expiry" });
    off();
    assert.deepEqual(changes, ["null->ready", "ready->expired"]);
    assert.equal(store.getNode(node.nodeId)?.state, "expired");
    await socket.s.send(
      encodeMessage({
        type: "lease_renew",
        leaseId: ack.leaseId,
        epoch: ack.epoch,
        seq: 1,
        engine: "none",
        models: [],
        maxConcurrent: 1,
        freeSlots: 1,
      }),
    );
    const refused = await recv(socket);
    assert.ok(refused.type === "lease_refused" && refused.code === "expired", JSON.stringify(refused));
    assert.ok(!cp.readyLeases().some((l) => l.nodeId === node.nodeId), "an expired node gets no requests");
  });

  test("inference hooks: dispatch on control, credit on streaming, stream messages reach onNodeMessage", async () => {
    const node = enrollDirect(store, "p");
    const control = dealer(node.keys, "control");
    const streaming = dealer(node.keys, "streaming");
    // The streaming connection must exist before the router can route to it.
    assert.ok(await pong(streaming));
    const ack = await register(node, control, streaming);
    assert.equal(ack.type, "register_ack");
    const seen: Array<[Lease, NodeMessage]> = [];
    const off = cp.onNodeMessage((lease, m) => seen.push([lease, m]));
    const lease = cp.lease(node.nodeId);
    assert.ok(lease && cp.readyLeases().includes(lease));
    assert.ok(
      await cp.send(node.nodeId, {
        type: "dispatch",
        requestId: "req-1",
        leaseId: lease.leaseId,
        epoch: lease.epoch,
        project: "p",
        tenant: "t",
        model: "m",
        path: "/v1/chat/completions",
        stream: true,
        body: Buffer.from("{}"),
        windowBytes: 65536,
        deadlineMs: 1000,
      }),
    );
    const dispatched = await recv(control);
    assert.ok(dispatched.type === "dispatch" && dispatched.requestId === "req-1");
    assert.ok(await cp.send(node.nodeId, { type: "credit", requestId: "req-1", bytes: 4096 }));
    const credit = await recv(streaming);
    assert.ok(credit.type === "credit" && credit.bytes === 4096, "credit travels on the streaming socket");
    await streaming.s.send(
      encodeMessage({ type: "chunk", requestId: "req-1", seq: 0, data: Buffer.from("data: hi\n\n") }),
    );
    await streaming.s.send(encodeMessage({ type: "stream_end", requestId: "req-1", seq: 1 }));
    await waitFor(() => seen.length >= 2, { timeoutMs: 5000, what: "stream messages" });
    off();
    assert.deepEqual(
      seen.map(([l, m]) => [l.nodeId, m.type]),
      [
        [node.nodeId, "chunk"],
        [node.nodeId, "stream_end"],
      ],
    );
    assert.equal(
      await cp.send("node_000000000000000000000000", { type: "cancel", requestId: "x", reason: "r" }),
      false,
      "no lease, no send",
    );
  });

  test("node session and router together: register, dispatch to the node, chunks back to the router", async () => {
    const node = enrollDirect(store, "p");
    const state = {
      nodeId: node.nodeId,
      keys: node.keys,
      routerPublicKey: routerKeys.publicKey,
      controlEndpoint: cp.controlEndpoint,
      streamingEndpoint: cp.streamingEndpoint,
    } as EnrollmentState;
    const got: RouterMessage[] = [];
    const session = new NodeSession({
      state,
      settings: {
        leaseRenewalIntervalMs: 100,
        leaseDurationMs: 2000,
        streamingSocketEnabled: true,
        maxConcurrent: 4,
      },
      logger: silentLogger(),
      status: () => ({ engine: "ready", models: ["tiny"], maxConcurrent: 4, freeSlots: 3 }),
      onMessage: (m) => got.push(m),
    });
    const running = session.start();
    try {
      const lease = await waitFor(() => cp.lease(node.nodeId)?.state === "ready" && cp.lease(node.nodeId), {
        timeoutMs: 5000,
        what: "registration",
      });
      assert.deepEqual(lease.status.models, ["tiny"]);
      const seen: NodeMessage[] = [];
      const off = cp.onNodeMessage((l, m) => {
        if (l.nodeId === node.nodeId) seen.push(m);
      });
      await cp.send(node.nodeId, {
        type: "dispatch",
        requestId: "q1",
        leaseId: lease.leaseId,
        epoch: lease.epoch,
        project: "p",
        tenant: "t",
        model: "tiny",
        path: "/v1/completions",
        stream: false,
        body: Buffer.from("{}"),
        windowBytes: 0,
        deadlineMs: 1000,
      });
      await waitFor(() => got.some((m) => m.type === "dispatch"), {
        timeoutMs: 5000,
        what: "dispatch at the node",
      });
      // Wait for the streaming connection before sending on it (the first messages could race the handshake).
      await waitFor(
        async () =>
          (await session.send({
            type: "stream_start",
            requestId: "q1",
            status: 200,
            contentType: "application/json",
          })) && seen.length > 0,
        { timeoutMs: 5000, intervalMs: 100, what: "stream_start at the router" },
      );
      await session.send({ type: "chunk", requestId: "q1", seq: 0, data: Buffer.from("{}") });
      await session.send({ type: "stream_end", requestId: "q1", seq: 1 });
      await waitFor(() => seen.some((m) => m.type === "stream_end"), {
        timeoutMs: 5000,
        what: "stream_end at the router",
      });
      await cp.send(node.nodeId, { type: "drain_request", reason: "maintenance", graceMs: 1000 });
      await waitFor(() => cp.lease(node.nodeId)?.state === "draining", {
        timeoutMs: 5000,
        what: "the node to answer a drain request",
      });
      assert.ok(
        got.some((m) => m.type === "drain_request"),
        "the engine side hears about it too",
      );
      assert.ok(
        !cp.readyLeases().some((l) => l.nodeId === node.nodeId),
        "a draining node gets no new requests",
      );
      off();
      assert.ok(seen.some((m) => m.type === "chunk"));
    } finally {
      await session.stop();
      await running;
    }
    await waitFor(() => cp.lease(node.nodeId)?.state === "expired", {
      timeoutMs: 5000,
      what: "release on stop",
    });
  });

  test("a node whose key the router does not know keeps retrying without crashing, and counts the refusals", async () => {
    const state = {
      nodeId: `node_${"f".repeat(24)}`,
      keys: generateCurveKeyPair(),
      routerPublicKey: routerKeys.publicKey,
      controlEndpoint: cp.controlEndpoint,
      streamingEndpoint: cp.streamingEndpoint,
    } as EnrollmentState;
    const session = new NodeSession({
      state,
      settings: {
        leaseRenewalIntervalMs: 100,
        leaseDurationMs: 500,
        streamingSocketEnabled: true,
        maxConcurrent: 1,
      },
      logger: silentLogger(),
    });
    const running = session.start();
    await waitFor(() => session.counters.authFailures > 0, {
      timeoutMs: 5000,
      what: "a refused handshake at the node",
    });
    assert.equal(session.lease, null);
    await session.stop();
    await running;
  });
});
