/**
 * The node's session against a scripted router: a real CURVE ROUTER socket
 * that the test drives frame by frame, so it can send garbage, refuse, go
 * silent, and check what the node sends.
 */
import assert from "node:assert/strict";
import { randomBytes } from "node:crypto";
import { after, describe, test } from "node:test";
import fc from "fast-check";
import { Packr } from "msgpackr";
import * as zmq from "zeromq";
import {
  leaseLostAfterMs,
  reconnectPolicy,
  registerTimeoutMs,
  renewalIntervalMs,
} from "../../src/agent/lease.ts";
import { NodeSession, type NodeSessionOptions } from "../../src/agent/session.ts";
import { backoffCeiling, backoffDelay } from "../../src/core/backoff.ts";
import { XimError } from "../../src/core/errors.ts";
import { silentLogger } from "../../src/core/log.ts";
import type { EnrollmentState } from "../../src/enrollment/state.ts";
import { decodeNodeMessage, encodeMessage } from "../../src/protocol/codec.ts";
import type { NodeMessage, RouterMessage } from "../../src/protocol/messages.ts";
import { PROTOCOL_VERSION } from "../../src/protocol/version.ts";
import { curveSharedSecret, generateCurveKeyPair, verifyRegisterProof } from "../../src/transport/curve.ts";
import { waitFor } from "../router/harness.ts";

const routerKeys = generateCurveKeyPair();
const open: zmq.Socket[] = [];
const sessions: NodeSession[] = [];
after(async () => {
  for (const s of sessions) await s.stop();
  for (const s of open) if (!s.closed) s.close();
});

async function fakeRouter(): Promise<zmq.Router> {
  const socket = new zmq.Router({
    curveServer: true,
    curvePublicKey: routerKeys.publicKey,
    curveSecretKey: routerKeys.secretKey,
    linger: 0,
  });
  socket.receiveTimeout = 8000;
  await socket.bind("tcp://127.0.0.1:*");
  open.push(socket);
  return socket;
}

async function next(socket: zmq.Router): Promise<{ rid: Buffer; m: NodeMessage }> {
  const [rid, frame] = await socket.receive();
  const r = decodeNodeMessage(frame);
  assert.ok(r.ok, r.ok ? "" : r.detail);
  return { rid, m: r.message };
}

async function until<T extends NodeMessage["type"]>(socket: zmq.Router, type: T) {
  for (;;) {
    const got = await next(socket);
    if (got.m.type === type) return got as { rid: Buffer; m: Extract<NodeMessage, { type: T }> };
  }
}

async function setup(leaseMs = 1000, renewalMs = 100, extra: Partial<NodeSessionOptions> = {}) {
  const control = await fakeRouter();
  const streaming = await fakeRouter();
  const keys = generateCurveKeyPair();
  const state = {
    nodeId: `node_${randomBytes(12).toString("hex")}`,
    keys,
    routerPublicKey: routerKeys.publicKey,
    controlEndpoint: control.lastEndpoint as string,
    streamingEndpoint: streaming.lastEndpoint as string,
  } as EnrollmentState;
  const received: RouterMessage[] = [];
  const session = new NodeSession({
    state,
    settings: {
      leaseRenewalIntervalMs: renewalMs,
      leaseDurationMs: leaseMs,
      streamingSocketEnabled: true,
      maxConcurrent: 2,
    },
    logger: silentLogger(),
    onMessage: (m) => received.push(m),
    ...extra,
  });
  sessions.push(session);
  return { control, streaming, state, session, received };
}

function ack(nodeId: string, epoch: number, leaseMs = 1000) {
  return encodeMessage({
    type: "register_ack",
    nodeId,
    leaseId: randomBytes(16).toString("hex"),
    epoch,
    leaseDurationMs: leaseMs,
    renewalIntervalMs: 100,
    routerVersion: "test",
  });
}

describe("the node session", { timeout: 60_000 }, () => {
  test("registers with a valid proof, survives garbage from the router, renews, and relays messages both ways", async () => {
    // A register waits 20 s for its answer here (10 s renewals asked): decoding the garbage below took
    // seconds on a loaded machine, and a node that gave up on its first register would never see the ack.
    const { control, streaming, state, session, received } = await setup(30_000, 10_000);
    const running = session.start();
    const reg = await until(control, "register");
    assert.ok(
      verifyRegisterProof(
        curveSharedSecret(routerKeys, state.keys.publicKey),
        {
          nodeId: reg.m.nodeId,
          nonce: reg.m.nonce,
          challenge: reg.m.challenge,
          controlRoutingId: reg.m.controlRoutingId,
          streamingRoutingId: reg.m.streamingRoutingId,
        },
        reg.m.proof,
      ),
    );
    assert.equal(reg.rid.toString(), reg.m.controlRoutingId);
    assert.equal(reg.m.maxConcurrent, 2);

    await fc.assert(
      fc.asyncProperty(fc.uint8Array({ minLength: 1, maxLength: 200 }), async (bytes) => {
        await control.send([reg.rid, bytes]);
      }),
      { numRuns: 300 },
    );
    await control.send([
      reg.rid,
      new Packr({ useRecords: false }).pack({ v: PROTOCOL_VERSION, type: "self_destruct" }),
    ]);
    await control.send([reg.rid, Buffer.alloc(16 * 1024 * 1024 + 1)]);
    await control.send([reg.rid, ack(state.nodeId, 5)]);
    // Generous: the node first decodes 300 garbage frames and a 16 MiB one,
    // which took over 5 s on a loaded 2-core machine; the bound only stops a hang.
    await waitFor(() => session.lease?.epoch === 5, { timeoutMs: 30_000, what: "registration" });
    assert.ok(
      session.counters.malformed > 0 &&
        session.counters.unknownType === 1 &&
        session.counters.oversized === 1,
      JSON.stringify(session.counters),
    );

    const renew = await until(control, "lease_renew");
    assert.equal(renew.m.leaseId, session.lease?.leaseId);
    await control.send([reg.rid, encodeMessage({ type: "cancel", requestId: "r1", reason: "client left" })]);
    await waitFor(() => received.find((m) => m.type === "cancel"), {
      timeoutMs: 5000,
      what: "cancel delivered to onMessage",
    });

    assert.ok(await session.send({ type: "chunk", requestId: "r1", seq: 0, data: Buffer.from("x") }));
    const chunk = await until(streaming, "chunk");
    assert.equal(chunk.rid.toString(), reg.m.streamingRoutingId, "chunks travel on the streaming socket");

    await session.stop();
    await running;
    const release = await until(control, "lease_release");
    assert.equal(release.m.epoch, 5);
  });

  test("a router that goes silent: the node reconnects with new routing ids and re-registers with its last epoch", async () => {
    const { control, state, session } = await setup(600);
    void session.start();
    const first = await until(control, "register");
    await control.send([first.rid, ack(state.nodeId, 1, 600)]);
    await waitFor(() => session.lease?.epoch === 1, { timeoutMs: 5000, what: "first registration" });
    // Answer nothing more: renewals go unanswered for a whole lease.
    const second = await until(control, "register");
    assert.equal(second.m.lastEpoch, 1);
    assert.notEqual(
      second.m.controlRoutingId,
      first.m.controlRoutingId,
      "a new connection has new routing ids",
    );
    await control.send([second.rid, ack(state.nodeId, 2, 600)]);
    await waitFor(() => session.lease?.epoch === 2, { timeoutMs: 5000, what: "re-registration" });
  });

  // A lease of 60 s and a bound of 20 s: a node that ignored the refusal would keep renewing and register
  // again only once the whole lease went unanswered; one that handles it registers within milliseconds.
  test("a lease refused as fenced or expired makes the node register again at once", {
    timeout: 20_000,
  }, async () => {
    const { control, state, session } = await setup(60_000);
    void session.start();
    const reg = await until(control, "register");
    await control.send([reg.rid, ack(state.nodeId, 3, 60_000)]);
    const renew = await until(control, "lease_renew");
    await control.send([
      reg.rid,
      encodeMessage({
        type: "lease_refused",
        leaseId: renew.m.leaseId,
        epoch: 3,
        code: "expired",
        message: "late",
        currentEpoch: 3,
      }),
    ]);
    const again = await until(control, "register");
    assert.equal(again.m.lastEpoch, 3);
  });

  test("register, renewals and node_status carry the node's lifecycle state and its lease changes are told", async () => {
    let state: "registering" | "loading" | "ready" = "registering";
    const leases: (string | null)[] = [];
    const {
      control,
      state: enrollment,
      session,
    } = await setup(1000, 100, {
      nodeState: () => state,
      onLeaseChange: (lease) => leases.push(lease ? lease.leaseId : null),
    });
    void session.start();
    const reg = await until(control, "register");
    assert.equal(reg.m.state, "registering");
    await control.send([reg.rid, ack(enrollment.nodeId, 7)]);
    await waitFor(() => session.lease?.epoch === 7, { timeoutMs: 5000, what: "registration" });
    assert.deepEqual(leases, [session.lease?.leaseId]);
    state = "loading";
    // A renewal already on its way may still say "registering": the next ones say "loading".
    let renew = await until(control, "lease_renew");
    while (renew.m.state !== "loading") {
      assert.equal(renew.m.state, "registering");
      renew = await until(control, "lease_renew");
    }
    state = "ready";
    assert.ok(await session.reportStatus());
    const status = await until(control, "node_status");
    assert.equal(status.m.state, "ready");
    await session.stop();
    assert.deepEqual(leases.at(-1), null, "the lease let go at the stop is told too");
  });

  test("a version mismatch from any router version stops the session with which side to upgrade", async () => {
    const { control, session } = await setup();
    const running = session.start();
    const reg = await until(control, "register");
    const refusal = {
      v: 99,
      type: "register_refused",
      code: "version_mismatch",
      message:
        "protocol version mismatch: node speaks v1, router speaks v99; this node is older: upgrade the node",
      upgrade: "node",
      routerProtocolVersion: 99,
      extra: "ignored",
    };
    await control.send([reg.rid, new Packr({ useRecords: false }).pack(refusal)]);
    await assert.rejects(running, (err: unknown) => {
      assert.ok(err instanceof XimError);
      assert.equal(err.exitCode, 11);
      assert.match(err.message, /upgrade the node/);
      assert.match(err.hint ?? "", /Upgrade xim on this node/);
      return true;
    });
  });
});

describe("lease timing and reconnect backoff", () => {
  test("renew at the configured interval, at least twice per lease", () => {
    assert.equal(renewalIntervalMs(10_000, 30_000), 10_000);
    assert.equal(renewalIntervalMs(10_000, 12_000), 6000);
    assert.equal(renewalIntervalMs(10_000, 30_000, 5000), 5000);
    assert.equal(leaseLostAfterMs(30_000), 30_000);
    assert.equal(registerTimeoutMs(10_000, 30_000), 20_000);
    assert.equal(registerTimeoutMs(200, 1000), 1000);
  });

  test("full jitter: every delay lies in [0, min(30 s, base * 2^attempt)]", () => {
    const policy = reconnectPolicy(10_000);
    assert.deepEqual(policy, { baseMs: 1000, maxMs: 30_000, jitter: "full" });
    fc.assert(
      fc.property(
        fc.integer({ min: 0, max: 40 }),
        fc.double({ min: 0, max: 0.9999999, noNaN: true }),
        (attempt, r) => {
          const d = backoffDelay(policy, attempt, () => r);
          assert.ok(d >= 0 && d <= backoffCeiling(policy, attempt) && d <= 30_000);
        },
      ),
    );
    assert.equal(backoffCeiling(policy, 3), 8000);
  });
});
