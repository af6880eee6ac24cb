/**
 * The scheduler's rules for requests no node may take now, on leases the
 * test writes (the scheduler reads nothing else; the sockets around it are
 * tested in conditions-dispatch.test.ts): how many are held per away node,
 * what the refusal says for each reason a node is away, and that a
 * stopping router answers the held ones.
 */
import assert from "node:assert/strict";
import { test } from "node:test";
import type { Lease } from "../../src/router/control-plane.ts";
import { type Placement, Scheduler } from "../../src/router/queue.ts";

function lease(nodeId: string, o: Partial<Lease> = {}): Lease {
  return {
    nodeId,
    project: "p",
    leaseId: "0".repeat(32),
    epoch: 1,
    controlRoutingId: `c.${nodeId}`,
    streamingRoutingId: null,
    leaseMs: 30_000,
    lastRenewal: Date.now(),
    state: "ready",
    status: { engine: "ready", models: ["m"], maxConcurrent: 1, freeSlots: 1 },
    hardware: null,
    agentVersion: "test",
    reportedState: null,
    conditions: [],
    ...o,
  };
}

function source(leases: Lease[]) {
  return { leases: () => leases, lease: (id: string) => leases.find((l) => l.nodeId === id) };
}

// Long enough never to run out during a test: every held request here is answered by the test.
const SETTINGS = { queueMax: 2, queueTimeoutMs: 60_000 };

test("requests are held up to queueMax per away node; the next is refused naming each node's reason", async () => {
  const leases = [
    lease("node_a", { controlRoutingId: null }),
    lease("node_b", { state: "draining" }),
    lease("node_c", {
      state: "registered",
      status: { engine: "loading", models: ["m"], maxConcurrent: 1, freeSlots: 1 },
    }),
  ];
  const scheduler = new Scheduler(source(leases), SETTINGS);
  const held: Promise<Placement>[] = [];
  for (let i = 0; i < 6; i++) held.push(scheduler.acquire("p", "m"));
  assert.equal(scheduler.queued(), 6);
  const refused = await scheduler.acquire("p", "m");
  assert.equal(refused.ok, false);
  if (refused.ok) return;
  assert.equal(refused.code, "queue_full");
  assert.match(refused.message, /node node_a has not reconnected since the router started/);
  assert.match(refused.message, /node node_b is draining/);
  assert.match(refused.message, /node node_c has its engine loading/);
  assert.ok((refused.retryAfterMs ?? 0) >= 1000);

  scheduler.close();
  for (const p of await Promise.all(held)) assert.equal(p.ok ? "ok" : p.code, "router_stopping");
  assert.equal(scheduler.queued(), 0);
});

test("a held request is served as soon as its node is ready again (at the next pump)", async () => {
  const node = lease("node_a", { state: "expired", controlRoutingId: null });
  const scheduler = new Scheduler(source([node]), SETTINGS);
  const held = scheduler.acquire("p", "m");
  assert.equal(scheduler.queued(), 1);
  Object.assign(node, { state: "ready", controlRoutingId: "c.node_a" });
  scheduler.pump();
  const placed = await held;
  assert.equal(placed.ok && placed.lease.nodeId, "node_a");
  assert.equal(placed.ok && placed.queued, true);
  scheduler.close();
});

test("a client that goes away while held frees its place", async () => {
  const scheduler = new Scheduler(source([lease("node_a", { state: "expired" })]), {
    ...SETTINGS,
    queueMax: 1,
  });
  const gone = new AbortController();
  const first = scheduler.acquire("p", "m", gone.signal);
  gone.abort();
  assert.equal((await first).ok, false);
  const second = scheduler.acquire("p", "m");
  assert.equal(scheduler.queued(), 1, "the place of the client that went is free again");
  scheduler.close();
  assert.equal((await second).ok, false);
});
