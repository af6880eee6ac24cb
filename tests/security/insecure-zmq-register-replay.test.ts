/**
 * Under `--insecure-zmq` everything a node sends is readable on the wire.
 * An attacker who captured a node's `register` (here: a TCP relay between
 * the real node session and the router, reading the ZMTP frames) and sends
 * it again, from its own connection with the node's routing id, must not
 * get the node's lease: the proof answers a single-use challenge.
 */
import assert from "node:assert/strict";
import { after, before, test } from "node:test";
import { NodeSession } from "../../src/agent/session.ts";
import { silentLogger } from "../../src/core/log.ts";
import type { EnrollmentState } from "../../src/enrollment/state.ts";
import { decodeNodeMessages } from "../../src/protocol/codec.ts";
import type { NodeMessageOf } from "../../src/protocol/messages.ts";
import { openDealer } from "../../src/transport/sockets.ts";
import { enrollDirect } from "../helpers/enroll-direct.ts";
import { Stack } from "../helpers/stack.ts";
import { waitFor } from "../router/harness.ts";
import { ZmtpSniffer } from "./zmtp-sniffer.ts";

let stack: Stack;
let sniffer: ZmtpSniffer;

before(async () => {
  stack = await Stack.start({ plainZmq: true });
  const port = Number(/:(\d+)$/.exec(stack.service.controlPlane.controlEndpoint)?.[1]);
  sniffer = await ZmtpSniffer.start({ host: "127.0.0.1", port });
});

after(async () => {
  await sniffer?.close();
  await stack?.close();
});

function sniffedRegisters(): Array<{ frame: Buffer; message: NodeMessageOf<"register"> }> {
  const out = [];
  for (const frame of sniffer.frames)
    for (const r of decodeNodeMessages(frame))
      if (r.ok && r.message.type === "register") out.push({ frame, message: r.message });
  return out;
}

test("a register captured on the wire and replayed with the node's routing id is refused; the node keeps its lease", {
  timeout: 60_000,
}, async () => {
  const { nodeId, keys } = enrollDirect(stack.service.store);
  const cp = stack.service.controlPlane;
  const session = new NodeSession({
    state: {
      nodeId,
      keys,
      routerPublicKey: stack.service.identity.curve.publicKey,
      controlEndpoint: `tcp://127.0.0.1:${sniffer.port}`,
      streamingEndpoint: cp.streamingEndpoint,
      curve: false,
    } as EnrollmentState,
    settings: {
      leaseRenewalIntervalMs: 100,
      leaseDurationMs: 3000,
      streamingSocketEnabled: true,
      maxConcurrent: 1,
    },
    logger: silentLogger(),
  });
  const running = session.start();
  const attacker = [] as ReturnType<typeof openDealer>[];
  try {
    const lease = await waitFor(() => (cp.lease(nodeId)?.controlRoutingId ? cp.lease(nodeId) : undefined), {
      timeoutMs: 10_000,
      what: "the real node's registration",
    });
    const captured = sniffedRegisters().at(-1);
    assert.ok(captured, "the register was seen on the wire");
    assert.equal(captured.message.controlRoutingId, lease.controlRoutingId);
    const refusedBefore = cp.counters.badProof;
    // The attacker connects with the node's own routing id (the router hands it over) and replays.
    const socket = openDealer({
      role: "control",
      keys,
      serverPublicKey: stack.service.identity.curve.publicKey,
      endpoint: cp.controlEndpoint,
      routingId: captured.message.controlRoutingId,
      curve: false,
    });
    attacker.push(socket);
    await socket.send(captured.frame);
    await waitFor(() => cp.counters.badProof > refusedBefore || cp.lease(nodeId)?.epoch !== lease.epoch, {
      timeoutMs: 10_000,
      what: "the router to answer the replay",
    });
    const now = cp.lease(nodeId);
    assert.equal(now?.epoch, lease.epoch, "the replay did not start a new lease");
    assert.equal(now?.leaseId, lease.leaseId);
    assert.equal(cp.counters.badProof, refusedBefore + 1);
    // Taking over the plain connection by its routing id cuts the node off for a while (no
    // encryption, no defence against an active attacker: docs/protocol.md); the node then
    // registers again itself. The lease the router holds is always the real node's.
    socket.close();
    await waitFor(
      () => {
        const l = cp.lease(nodeId);
        return (
          l &&
          l.state !== "expired" &&
          session.lease?.leaseId === l.leaseId &&
          session.lease.epoch === l.epoch
        );
      },
      { timeoutMs: 20_000, what: "the router's lease to be the real node's" },
    );
  } finally {
    for (const s of attacker) if (!s.closed) s.close();
    await session.stop();
    await running.catch(() => undefined);
  }
});
