/**
 * Attack: a node the operator revoked keeps its CURVE connection open and
 * ignores being told. The revocation is written by another database
 * connection (as `xim router nodes revoke`, a separate process, does); the
 * running control plane must then, on that same live connection, renew
 * nothing, dispatch nothing, accept no stream message and no new
 * registration, refuse the key at the next handshake, and never let the key
 * enroll again. Real CURVE ZeroMQ sockets on loopback; the revocation poll is
 * run by calling checkRevocations() (what the timer runs), so no wait
 * depends on timing.
 */
import assert from "node:assert/strict";
import { randomBytes } from "node:crypto";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, test } from "node:test";
import type * as zmq from "zeromq";
import { XimError } from "../../src/core/errors.ts";
import { silentLogger } from "../../src/core/log.ts";
import { decodeRouterMessage, encodeMessage } from "../../src/protocol/codec.ts";
import { joinKeyId, joinKeySecretHash } from "../../src/protocol/join-key.ts";
import type { NodeMessage, RouterMessage } from "../../src/protocol/messages.ts";
import { ControlPlane, type Lease } from "../../src/router/control-plane.ts";
import { initRouter, loadIdentity } from "../../src/router/identity.ts";
import { revokeNode } from "../../src/router/nodes.ts";
import { RouterStore } from "../../src/router/store.ts";
import { type CurveKeyPair, curveSharedSecret, registerProof } from "../../src/transport/curve.ts";
import { newRoutingId, openDealer } from "../../src/transport/sockets.ts";
import { enrollDirect } from "../helpers/enroll-direct.ts";

const dir = mkdtempSync(join(tmpdir(), "xim-revoke-live-"));
const stateDir = join(dir, "router");
let store: RouterStore;
let cp: ControlPlane;
let routerKeys: CurveKeyPair;
const sockets: zmq.Socket[] = [];

function control(keys: CurveKeyPair) {
  const rid = newRoutingId("control");
  const s = openDealer({
    role: "control",
    keys,
    serverPublicKey: routerKeys.publicKey,
    endpoint: cp.controlEndpoint,
    routingId: rid,
  });
  s.receiveTimeout = 5000;
  sockets.push(s);
  return { s, rid };
}

async function recv(s: zmq.Dealer): Promise<RouterMessage> {
  const [frame] = await s.receive();
  const r = decodeRouterMessage(frame);
  assert.ok(r.ok, r.ok ? "" : r.detail);
  return r.message;
}

/** Register on `c`, answering the router's challenge round (protocol 2); the router's last answer. */
async function register(node: { nodeId: string; keys: CurveKeyPair }, c: { s: zmq.Dealer; rid: string }) {
  const send = async (challenge: string | null) => {
    const ids = {
      nodeId: node.nodeId,
      nonce: randomBytes(16).toString("hex"),
      challenge,
      controlRoutingId: c.rid,
      streamingRoutingId: null,
    };
    await c.s.send(
      encodeMessage({
        type: "register",
        ...ids,
        lastEpoch: 0,
        proof: registerProof(curveSharedSecret(node.keys, routerKeys.publicKey), ids),
        agentVersion: "test",
        hardware: { hostname: "t", platform: "linux", arch: "x64", cpus: 1, memoryBytes: 1, gpus: [] },
        engine: "ready",
        models: ["m"],
        maxConcurrent: 2,
        freeSlots: 2,
        requestedLeaseMs: 30_000,
        renewalIntervalMs: 100,
        windowBytes: 65536,
      }),
    );
    return recv(c.s);
  };
  const first = await send(null);
  return first.type === "register_challenge" ? send(first.challenge) : first;
}

function renewal(lease: { leaseId: string; epoch: number }, seq: number) {
  return encodeMessage({
    type: "lease_renew",
    ...lease,
    seq,
    engine: "ready",
    models: ["m"],
    maxConcurrent: 2,
    freeSlots: 2,
  });
}

before(async () => {
  store = await RouterStore.open(stateDir);
  await initRouter(store);
  routerKeys = loadIdentity(store).curve;
  cp = await ControlPlane.start({
    store,
    keys: routerKeys,
    controlBind: "tcp://127.0.0.1:*",
    streamingBind: "tcp://127.0.0.1:*",
    logger: silentLogger(),
    // The test runs the poll itself (checkRevocations) so nothing waits on a timer.
    revocationPollMs: 3_600_000,
  });
});

after(async () => {
  for (const s of sockets) if (!s.closed) s.close();
  await cp.close();
  store.close();
  rmSync(dir, { recursive: true, force: true });
});

describe("a revoked node that keeps its live connection", { timeout: 60_000 }, () => {
  test("is told on that connection, renews nothing, receives no dispatch, and its stream messages are dropped", async () => {
    const rogue = enrollDirect(store, "p");
    const c = control(rogue.keys);
    const ack = await register(rogue, c);
    assert.equal(ack.type, "register_ack");
    if (ack.type !== "register_ack") return;
    const lease = { leaseId: ack.leaseId, epoch: ack.epoch };
    await c.s.send(renewal(lease, 0));
    assert.equal((await recv(c.s)).type, "lease_ack", "renewals work before the revocation");

    const changes: Lease[] = [];
    const heard: NodeMessage[] = [];
    const offLease = cp.onLeaseChange((l) => changes.push({ ...l }));
    const offMessage = cp.onNodeMessage((_l, m) => heard.push(m));
    try {
      // `xim router nodes revoke` is another process: another connection to the same database.
      const cli = await RouterStore.open(stateDir);
      try {
        const revoked = revokeNode(cli, rogue.nodeId.slice(0, 14));
        assert.equal(revoked.nodeId, rogue.nodeId);
        assert.equal(revoked.alreadyRevoked, false);
      } finally {
        cli.close();
      }
      cp.checkRevocations();

      const told = await recv(c.s);
      assert.equal(told.type, "node_revoked");
      assert.equal(told.type === "node_revoked" && told.nodeId, rogue.nodeId);
      assert.equal(cp.lease(rogue.nodeId), undefined, "the lease is over");
      assert.ok(!cp.readyLeases().some((l) => l.nodeId === rogue.nodeId));
      assert.ok(
        changes.some((l) => l.nodeId === rogue.nodeId && l.revoked === true && l.state === "expired"),
        "the relay hears of the revocation (it ends the node's streams)",
      );
      const dispatched = await cp.send(rogue.nodeId, {
        type: "drain_request",
        reason: "a message the router would send",
        graceMs: 0,
      });
      assert.equal(dispatched, false, "nothing is sent to a revoked node");

      // The rogue ignores the revocation: it renews, streams and registers again on the same connection.
      await c.s.send(renewal(lease, 1));
      const renewed = await recv(c.s);
      assert.equal(renewed.type, "node_revoked", "a renewal is answered with node_revoked, not lease_ack");
      await c.s.send(encodeMessage({ type: "stream_end", requestId: "r1", seq: 0 }));
      const again = await register(rogue, c);
      assert.equal(again.type, "register_refused");
      assert.equal(again.type === "register_refused" && again.code, "revoked");
      assert.deepEqual(
        heard.filter((m) => m.type === "stream_end"),
        [],
        "stream messages of a revoked node reach no listener",
      );
      assert.equal(cp.lease(rogue.nodeId), undefined, "no lease was granted again");
      assert.equal(store.getNode(rogue.nodeId)?.stateReason, "revoked by the operator");
    } finally {
      offLease();
      offMessage();
    }
  });

  test("a revoked key fails the CURVE handshake of a new connection", async () => {
    const node = enrollDirect(store, "p");
    revokeNode(store, node.nodeId);
    const before = cp.counters.zapRefused;
    const s = openDealer({
      role: "control",
      keys: node.keys,
      serverPublicKey: routerKeys.publicKey,
      endpoint: cp.controlEndpoint,
    });
    sockets.push(s);
    s.receiveTimeout = 800;
    const refused = (async () => {
      for await (const event of s.events) if (event.type === "handshake:error:auth") return true;
      return false;
    })();
    await s.send(encodeMessage({ type: "ping", nonce: "0".repeat(32), sentAtMs: 1 }));
    assert.equal(await refused, true);
    assert.ok(cp.counters.zapRefused > before);
    s.close();
  });

  test("a revoked node's key never enrolls again, even with a fresh join key", () => {
    const node = enrollDirect(store, "p");
    revokeNode(store, node.nodeId);
    const hash = joinKeySecretHash(randomBytes(16));
    store.insertJoinKey({
      id: joinKeyId(hash),
      hash,
      project: "p",
      usesAllowed: 1,
      uses: 0,
      expiresAt: null,
      labels: {},
      createdAt: Date.now(),
      revokedAt: null,
    });
    const r = store.enrollNode({
      hash,
      project: "p",
      nodeId: `node_${randomBytes(12).toString("hex")}`,
      publicKey: node.keys.publicKey,
      hostname: "t",
      agentVersion: "test",
      now: Date.now(),
    });
    assert.equal(r.ok, false);
    assert.match(r.ok ? "" : r.message, /revoked/);
  });

  test("an unknown or ambiguous node id is refused with the candidates, and nothing is revoked", () => {
    enrollDirect(store, "p");
    enrollDirect(store, "p");
    const before = store.revokedNodeIds().size;
    assert.throws(
      () => revokeNode(store, "node_"),
      (err: unknown) =>
        err instanceof XimError && err.exitCode === 2 && /matches \d+ nodes/.test(err.message),
    );
    assert.throws(
      () => revokeNode(store, "node_zzzz"),
      (err: unknown) => err instanceof XimError && /no enrolled node 'node_zzzz'/.test(err.message),
    );
    assert.equal(store.revokedNodeIds().size, before);
  });
});
