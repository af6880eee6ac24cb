/**
 * Attack (or router bug): a second dispatch with the id of a stream the
 * node is running. The node must refuse the new one with an error the
 * router sees (never drop it silently, never let it merge into the running
 * stream), and the running stream must go on untouched: its client gets
 * its own answer, and the engine never sees the second request. The
 * router itself never lets a second request into an id in flight.
 */
import assert from "node:assert/strict";
import http from "node:http";
import type { AddressInfo } from "node:net";
import { after, before, describe, test } from "node:test";
import { waitFor } from "../router/harness.ts";
import {
  chatRequest,
  expectedContent,
  type GatedStack,
  sendRequest,
  settledContent,
  startGatedStack,
} from "./request-id-harness.ts";

const PROMPT = "the question of the request that runs first";

describe("a dispatch whose id the node already runs", { timeout: 120_000 }, () => {
  let g: GatedStack;

  before(async () => {
    g = await startGatedStack(2);
  });

  after(async () => {
    g?.engine.open();
    await g?.stack.close();
  });

  test("a replayed dispatch id is refused by the node, reported to the router, and the running stream is untouched", async () => {
    const answer = await expectedContent(g.engine, PROMPT);
    const key = g.stack.apiKey("default", "first");
    g.engine.hold();
    const arrivedBefore = g.engine.arrived.length;
    const first = sendRequest(g.stack.url, { authorization: `Bearer ${key}` }, chatRequest(PROMPT));
    const streamId = await waitFor(() => g.node.relay.live()[0]?.requestId, {
      timeoutMs: 10_000,
      what: "the first request to run at the node",
    });
    const cp = g.stack.service.controlPlane;
    const lease = cp.lease(g.node.nodeId);
    assert.ok(lease);
    const sent = await cp.send(g.node.nodeId, {
      type: "dispatch",
      requestId: streamId,
      leaseId: lease.leaseId,
      epoch: lease.epoch,
      project: "default",
      tenant: "someone-else",
      model: "sim-model",
      path: "/v1/chat/completions",
      stream: false,
      body: Buffer.from(JSON.stringify(chatRequest("a different question"))) as Uint8Array<ArrayBuffer>,
      windowBytes: 65536,
      deadlineMs: 0,
    });
    assert.ok(sent);
    const relay = g.stack.service.relay;
    await waitFor(() => relay.dropped.duplicateDispatch >= 1, {
      timeoutMs: 10_000,
      what: `the router to hear of the refused duplicate (${JSON.stringify(relay.dropped)})`,
    });
    assert.equal(g.node.relay.inFlight, 1, "the node still runs one stream");
    g.engine.open();
    assert.equal(await settledContent(first), answer, "the running stream's client got its own answer");
    assert.equal((await first).status, 200);
    assert.deepEqual(
      g.engine.arrived.slice(arrivedBefore),
      [streamId],
      "the engine saw the first request only",
    );
  });

  test("the router refuses a second request under an internal id already in flight instead of joining them", async () => {
    const answer = await expectedContent(g.engine, PROMPT);
    const relay = g.stack.service.relay;
    // A front that hands the relay a fixed id, as a bug in minting would: the relay is the last guard.
    const front = http.createServer((req, res) => {
      const parts: Buffer[] = [];
      req.on("data", (d: Buffer) => parts.push(d));
      req.on("end", () => {
        const gone = new AbortController();
        res.once("close", () => {
          if (!res.writableFinished) gone.abort();
        });
        void relay.serve(
          {
            requestId: "the-same-internal-id",
            project: "default",
            tenant: String(req.headers["x-tenant"]),
            model: "sim-model",
            path: "/v1/chat/completions",
            stream: false,
            body: Buffer.concat(parts),
            signal: gone.signal,
            receivedAt: Date.now(),
          },
          res,
        );
      });
    });
    await new Promise<void>((resolve) => front.listen(0, "127.0.0.1", resolve));
    try {
      const url = `http://127.0.0.1:${(front.address() as AddressInfo).port}`;
      g.engine.hold();
      const first = sendRequest(url, { "x-tenant": "first" }, chatRequest(PROMPT));
      await waitFor(() => g.engine.held === 1, {
        timeoutMs: 10_000,
        what: "the first request at the engine",
      });
      const second = await sendRequest(
        url,
        { "x-tenant": "second" },
        chatRequest("another tenant's question"),
      );
      assert.equal(second.status, 500, second.body.toString());
      assert.match(second.body.toString(), /internal_error/);
      g.engine.open();
      assert.equal(await settledContent(first), answer, "the first request kept its stream");
    } finally {
      g.engine.open();
      front.closeAllConnections();
      await new Promise<void>((resolve) => front.close(() => resolve()));
    }
  });
});
