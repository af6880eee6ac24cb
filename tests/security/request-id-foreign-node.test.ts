/**
 * Attack: an enrolled node writes into a stream it was not given. A second
 * node of the same project (a real CURVE session) learns the router's id
 * of another node's stream and sends stream_start, a chunk, stream_end and
 * a stream_error (what acknowledges a cancel) for it, and a chunk for an id the router never minted. The router must
 * drop and count every one of them; the client of that stream gets only
 * its own node's answer.
 */
import assert from "node:assert/strict";
import { join } from "node:path";
import { after, before, describe, test } from "node:test";
import { type NodeSession, runNode } from "../../src/agent/session.ts";
import { loadConfig } from "../../src/core/config/load.ts";
import { silentLogger } from "../../src/core/log.ts";
import { createJoinKey } from "../../src/router/join-keys.ts";
import { waitFor } from "../router/harness.ts";
import {
  chatRequest,
  expectedContent,
  type GatedStack,
  sendRequest,
  settledContent,
  startGatedStack,
} from "./request-id-harness.ts";

const PROMPT = "the victim's own question";

describe("stream messages from a node the stream was not dispatched to", { timeout: 120_000 }, () => {
  let g: GatedStack;
  let intruder: NodeSession | undefined;
  const stopIntruder = new AbortController();
  let intruderDone: Promise<unknown> = Promise.resolve();

  before(async () => {
    g = await startGatedStack(2);
    const { key } = createJoinKey(g.stack.service.store, g.stack.service.identity, {
      project: "default",
      uses: 1,
      ttlMs: null,
      labels: {},
    });
    const { config } = loadConfig({
      env: {
        XEROTIER_AGENT_CONFIG_DIR: join(g.stack.dir, "intruder"),
        XEROTIER_AGENT_JOIN_KEY: key,
        XEROTIER_AGENT_LEASE_RENEWAL_INTERVAL_MS: "200",
        XEROTIER_AGENT_LEASE_DURATION_MS: "3000",
      },
      cwd: g.stack.dir,
    });
    // It serves another model, so the router never dispatches a request to it.
    intruderDone = runNode({
      config,
      logger: silentLogger(),
      signal: stopIntruder.signal,
      status: () => ({ engine: "ready", models: ["intruder-model"], maxConcurrent: 1, freeSlots: 1 }),
      onSession: (s) => {
        intruder = s;
      },
    }).catch((err: unknown) => err);
    await waitFor(
      () =>
        g.stack.service.controlPlane.readyLeases().some((l) => l.status.models.includes("intruder-model")),
      { timeoutMs: 20_000, what: "the intruding node to hold a lease" },
    );
  });

  after(async () => {
    stopIntruder.abort();
    await intruderDone;
    g?.engine.open();
    await g?.stack.close();
  });

  test("a node injecting a start, a chunk, an end and a cancel acknowledgement into another node's stream is dropped and counted", async () => {
    const answer = await expectedContent(g.engine, PROMPT);
    const key = g.stack.apiKey("default", "victim");
    g.engine.hold();
    const victim = sendRequest(g.stack.url, { authorization: `Bearer ${key}` }, chatRequest(PROMPT));
    // The stream's id as the node that runs it knows it (the intruder is assumed to have learnt it).
    const streamId = await waitFor(() => g.node.relay.live()[0]?.requestId, {
      timeoutMs: 10_000,
      what: "the victim's stream to run at its node",
    });
    const relay = g.stack.service.relay;
    const session = intruder as NodeSession;
    const injected = Buffer.from('{"choices":[{"message":{"content":"injected by another node"}}]}');
    await session.send({
      type: "stream_start",
      requestId: streamId,
      status: 200,
      contentType: "application/json",
    });
    await session.send({
      type: "chunk",
      requestId: streamId,
      seq: 0,
      data: injected as Uint8Array<ArrayBuffer>,
    });
    await session.send({ type: "stream_end", requestId: streamId, seq: 1 });
    // A cancel acknowledgement (the stream_error a cancel gets) would free the victim's slot and end its answer.
    await session.send({
      type: "stream_error",
      requestId: streamId,
      seq: 2,
      code: "cancelled",
      message: "cancelled by the router: client disconnected",
      status: 499,
    });
    await session.send({
      type: "chunk",
      requestId: "a-stream-the-router-never-minted",
      seq: 0,
      data: injected as Uint8Array<ArrayBuffer>,
    });
    await waitFor(() => relay.dropped.foreignStream >= 4 && relay.dropped.unknownStream >= 1, {
      timeoutMs: 10_000,
      what: `the router to count the intruder's messages (${JSON.stringify(relay.dropped)})`,
    });
    assert.equal(relay.active, 1, "the victim's stream is still open at the router");
    assert.equal(
      g.stack.service.scheduler.inflight(g.node.nodeId),
      1,
      "its slot was not freed by the intruder",
    );
    g.engine.open();
    assert.equal(await settledContent(victim), answer, "the client got its own node's answer only");
    assert.equal((await victim).status, 200);
  });
});
