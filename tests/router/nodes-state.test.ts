import assert from "node:assert/strict";
import { test } from "node:test";
import { effectiveState } from "../../src/router/nodes.ts";
import { type NodeRow, RELEASED_BY_NODE } from "../../src/router/store.ts";

const NOW = 1_000_000;

function row(change: Partial<NodeRow>): NodeRow {
  return {
    nodeId: "node_1",
    project: "p",
    publicKey: "k",
    hostname: "h",
    agentVersion: "0",
    labels: {},
    joinKeyId: "jk",
    enrolledAt: 0,
    revokedAt: null,
    epoch: 1,
    leaseId: "l",
    state: "ready",
    stateReason: null,
    lastRenewal: NOW - 1000,
    leaseMs: 30_000,
    models: ["m"],
    maxConcurrent: 2,
    freeSlots: 2,
    engine: "ready",
    hardware: null,
    ...change,
  } as NodeRow;
}

test("a node that gave its lease back is `stopped`, not `expired`", () => {
  assert.equal(effectiveState(row({ state: "expired", stateReason: RELEASED_BY_NODE }), NOW), "stopped");
});

test("a node whose renewals stopped is `expired`, whatever the last state written", () => {
  assert.equal(effectiveState(row({ lastRenewal: NOW - 60_000 }), NOW), "expired");
  assert.equal(effectiveState(row({ state: "expired", stateReason: "lease expired" }), NOW), "expired");
});

test("revocation wins over every other state", () => {
  assert.equal(effectiveState(row({ revokedAt: NOW - 5 }), NOW), "revoked");
});
