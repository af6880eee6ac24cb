/**
 * Credit-based flow control: the node's ledger as a unit (windows, the
 * global pause threshold, the stall timeout), then the whole path with a
 * client that does not read: the node never holds more than the stream's
 * window, the engine is slowed rather than buffered, a stream without
 * credit for FLOW_CONTROL_TIMEOUT_SECONDS is cancelled at the engine and
 * reported, and with flow control off no credit is waited for.
 */
import assert from "node:assert/strict";
import { after, before, describe, test } from "node:test";
import { CreditLedger, StalledError } from "../../src/agent/credits.ts";
import { chatBody, post, Stack, slowRequest } from "../helpers/stack.ts";
import { waitFor } from "../router/harness.ts";

const flow = {
  flowControlEnabled: true,
  flowControlWindowBytes: 4096,
  flowControlReplenishThreshold: 0.5,
  flowControlPauseThresholdBytes: 6000,
  flowControlTimeoutSeconds: 1,
};

describe("the node's credit ledger", () => {
  test("a stream spends its window and waits at zero; credit gives it back", () => {
    const ledger = new CreditLedger(flow);
    const s = ledger.open(65536);
    assert.equal(s.window, 4096, "the node's own window caps the router's");
    assert.equal(s.replenishBytes, 2048);
    s.sent(4096);
    assert.equal(s.available(), 0);
    s.credit(2048);
    assert.equal(s.available(), 2048);
    assert.equal(s.peakUnacked, 4096);
    s.close();
    assert.equal(ledger.unackedBytes, 0);
  });

  test("unacknowledged bytes across streams at the pause threshold pause every stream", () => {
    const ledger = new CreditLedger(flow);
    const a = ledger.open(4096);
    const b = ledger.open(4096);
    a.sent(4096);
    assert.equal(b.available(), 4096);
    b.sent(2000);
    assert.equal(ledger.unackedBytes, 6096);
    assert.ok(ledger.paused);
    assert.equal(b.available(), 0, "b has window left but the global valve is shut");
    a.credit(2048);
    assert.ok(!ledger.paused);
    assert.equal(b.available(), 2096);
  });

  test("replenish: threshold x the window, capped at the stream's share of the pause threshold", () => {
    assert.equal(new CreditLedger(flow, { maxConcurrent: 1 }).open(4096).replenishBytes, 2048);
    // 6000 B of pause threshold over 4 streams: each can count on 1500 B; half of it is 750.
    assert.equal(new CreditLedger(flow, { maxConcurrent: 4 }).open(4096).replenishBytes, 750);
    assert.equal(new CreditLedger(flow, { maxConcurrent: 100_000 }).open(4096).replenishBytes, 1);
    assert.equal(new CreditLedger(flow, { maxConcurrent: 4 }).open(0).replenishBytes, 0);
  });

  test("at the default GPU concurrency (256 and 1024 streams), 0.1, 0.5 and 0.9 give different replenish points", () => {
    const defaults = {
      flowControlEnabled: true,
      flowControlWindowBytes: 65536,
      flowControlPauseThresholdBytes: 262144,
      flowControlTimeoutSeconds: 30,
    };
    const cases: Array<[number, number, number]> = [
      // [max concurrent, threshold, replenish bytes]: the share is 1024 B (256 streams) or 256 B (1024 streams).
      [256, 0.1, 103],
      [256, 0.5, 512],
      [256, 0.9, 922],
      [1024, 0.1, 26],
      [1024, 0.5, 128],
      [1024, 0.9, 231],
      // Low concurrency: the share (262144 B) is above the window, so the threshold applies to the window.
      [1, 0.1, 6554],
      [1, 0.5, 32768],
      [1, 0.9, 58983],
    ];
    for (const [maxConcurrent, threshold, expected] of cases) {
      const ledger = new CreditLedger(
        { ...defaults, flowControlReplenishThreshold: threshold },
        { maxConcurrent },
      );
      assert.equal(
        ledger.open(65536).replenishBytes,
        expected,
        `${maxConcurrent} streams, threshold ${threshold}`,
      );
    }
  });

  test("a lifted global pause wakes one paused stream at a time, each waking the next while they fit", async () => {
    const ledger = new CreditLedger({ ...flow, flowControlTimeoutSeconds: 30 });
    const hog = ledger.open(4096);
    hog.sent(4096);
    const other = ledger.open(4096);
    other.sent(2000);
    assert.ok(ledger.paused);
    const order: string[] = [];
    const waiters = ["a", "b", "c"].map((name) => {
      const s = ledger.open(4096);
      return s
        .waitUntil(() => s.available() > 0)
        .then(() => {
          order.push(name);
          s.sent(2500);
        });
    });
    // A woken stream passes the turn on after its own turn of the event loop: two turns settle it.
    const settle = async () => {
      for (let i = 0; i < 4; i++) await new Promise((r) => setImmediate(r));
    };
    await settle();
    assert.deepEqual(order, [], "all three wait while paused");
    hog.credit(4096); // 2000 unacknowledged: a goes on (4500), wakes b, b goes on (7000): paused again
    await settle();
    assert.deepEqual(order, ["a", "b"], "c was not woken: the pause is back");
    assert.ok(ledger.paused);
    other.credit(2000); // 5000: c's turn
    await settle();
    assert.deepEqual(order, ["a", "b", "c"]);
    await Promise.all(waiters);
  });

  test("flow control off (setting, or a window of 0 from the router) never waits", async () => {
    const off = new CreditLedger({ ...flow, flowControlEnabled: false }).open(65536);
    const zero = new CreditLedger(flow).open(0);
    for (const s of [off, zero]) {
      s.sent(1 << 20);
      assert.equal(s.available(), Number.POSITIVE_INFINITY);
      await s.waitUntil(() => s.available() > 0);
    }
  });

  test("a stream without credit for the timeout is stalled", async () => {
    const ledger = new CreditLedger(flow);
    const s = ledger.open(4096);
    s.sent(4096);
    const started = Date.now();
    await assert.rejects(
      s.waitUntil(() => s.available() > 0),
      StalledError,
    );
    assert.ok(Date.now() - started >= 900, "not before the timeout");
  });
});

describe("flow control through router and node", { timeout: 60_000 }, () => {
  let stack: Stack;
  before(async () => {
    stack = await Stack.start();
  });
  after(async () => {
    await stack?.close();
  });

  test("a slow reader keeps the node's buffered bytes within the window and slows the engine read", async (t) => {
    const window = 4096;
    const node = await stack.addNode({
      project: "slow-reader",
      // More output than every socket buffer on the way can hold: the stream cannot finish on its own.
      sim: { outputTokens: 1_000_000 },
      env: { XEROTIER_AGENT_FLOW_CONTROL_WINDOW_BYTES: String(window) },
    });
    const key = stack.apiKey("slow-reader", "t");
    const r = slowRequest(stack.url, "/v1/chat/completions", chatBody({ stream: true }), {
      authorization: `Bearer ${key}`,
    });
    after(() => r.destroy());
    await r.started;
    // The client reads nothing: the node ends up waiting for credit, its stream's bytes steady.
    let lastBytes = -1;
    const blocked = await waitFor(
      async () => {
        await new Promise((res) => setTimeout(res, 300));
        const live = node.relay.live()[0];
        const steady = live !== undefined && live.bytes === lastBytes && live.unacked === live.window;
        lastBytes = live?.bytes ?? -1;
        return steady ? live : undefined;
      },
      { timeoutMs: 20_000, what: "the node to wait for credit while the client reads nothing" },
    );
    assert.equal(blocked.window, window);
    assert.ok(blocked.peakUnacked <= window, `unacked ${blocked.peakUnacked} <= window ${window}`);
    // Held = read from the engine and not yet acknowledged: the window plus at most one socket
    // read (libuv reads at most 64 KiB at once; the relay forwards whole reads, see engine/sse.ts).
    assert.ok(blocked.peakHeld <= window + 65_536, `held ${blocked.peakHeld} B while blocked`);
    const engineWhileBlocked = node.engine.server.stats().generationTokens;
    await new Promise((res) => setTimeout(res, 300));
    assert.equal(
      node.engine.server.stats().generationTokens,
      engineWhileBlocked,
      "the engine is held back too",
    );

    // The client reads again: credit flows and the node goes on, still within the window.
    r.resume();
    await waitFor(() => (node.relay.live()[0]?.bytes ?? 0) > blocked.bytes + 1_000_000, {
      timeoutMs: 20_000,
      what: "the stream to move on once the client reads",
    });
    r.destroy();
    await waitFor(() => node.relay.inFlight === 0 && node.engine.server.stats().aborts === 1, {
      timeoutMs: 10_000,
      what: "the stream to end at node and engine",
    });
    const stats = node.relay.finished.at(-1);
    assert.ok(stats);
    assert.equal(stats.outcome, "cancelled");
    assert.ok(stats.peakUnacked <= window, `peak unacknowledged ${stats.peakUnacked} B <= ${window} B`);
    assert.ok(stats.peakHeld <= window + 65_536, `peak held ${stats.peakHeld} B`);
    assert.equal(node.relay.ledger.unackedBytes, 0);
    t.diagnostic(
      `window ${window} B: peak unacked ${stats.peakUnacked} B, peak held ${stats.peakHeld} B; with the client paused the node stopped after ${blocked.bytes} B (the rest of what the engine wrote, ${engineWhileBlocked} tokens, waits in socket buffers); ${stats.bytes} B in ${stats.chunks} chunks in all`,
    );
  });

  test("a stream with no credit for the timeout is cancelled at the engine and reported as stalled", async () => {
    const node = await stack.addNode({
      project: "stall",
      sim: { outputTokens: 1_000_000 },
      env: {
        XEROTIER_AGENT_FLOW_CONTROL_WINDOW_BYTES: "4096",
        XEROTIER_AGENT_FLOW_CONTROL_TIMEOUT_SECONDS: "1",
      },
    });
    const key = stack.apiKey("stall", "t");
    const r = slowRequest(stack.url, "/v1/chat/completions", chatBody({ stream: true }), {
      authorization: `Bearer ${key}`,
    });
    after(() => r.destroy());
    await r.started;
    await waitFor(() => node.relay.finished.find((s) => s.outcome === "stalled"), {
      timeoutMs: 20_000,
      what: "the stream to stall",
    });
    await waitFor(() => node.engine.server.stats().aborts === 1, {
      timeoutMs: 10_000,
      what: "the engine to see the cancel",
    });
    r.resume();
    const text = (await r.ended).toString();
    const last = text.split("\n\n").filter(Boolean).at(-1) as string;
    assert.match(last, /^data: \{"error":/);
    assert.equal(JSON.parse(last.slice(6)).error.code, "stalled");
    assert.equal(node.relay.inFlight, 0);
    assert.equal(node.relay.ledger.unackedBytes, 0, "the stalled stream's bytes were released");
  });

  test("with flow control off (router and node) the node waits for no credit", async () => {
    // Only the router may switch flow control off: a node with it off joins only such a router.
    const off = await Stack.start({ flow: { windowBytes: 0, replenishThreshold: 0.5, creditIdleMs: 100 } });
    try {
      const node = await off.addNode({
        project: "no-flow",
        sim: { outputTokens: 2000 },
        env: { XEROTIER_AGENT_FLOW_CONTROL_ENABLED: "0" },
      });
      const key = off.apiKey("no-flow", "t");
      const r = await post(off.url, "/v1/chat/completions", chatBody({ stream: true }), {
        authorization: `Bearer ${key}`,
      });
      assert.equal(r.status, 200);
      const stats = node.relay.finished.at(-1);
      assert.equal(stats?.window, 0);
      assert.equal(stats?.outcome, "ok");
      assert.equal(stats?.bytes, r.body.length);
    } finally {
      await off.close();
    }
  });
});
