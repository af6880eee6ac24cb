/**
 * clock_skew: the router puts its time in register_ack and lease_ack, the
 * node compares its own clock at the middle of each round trip and raises
 * clock_skew (degraded) past 5 s, clearing it within. The node's clock is
 * injected (no real skew needed): against a real router (CURVE ZeroMQ, in
 * this process) a session whose clock is 30 s off reports clock_skew in its
 * next renewal, and clears it once its clock agrees.
 */
import assert from "node:assert/strict";
import { after, describe, test } from "node:test";
import {
  CLOCK_SKEW_BOUND_MS,
  clockOffsetMs,
  clockSkewFinding,
} from "../../src/agent/conditions/clock-skew.ts";
import { NodeConditions } from "../../src/agent/conditions/node-conditions.ts";
import { NodeSession } from "../../src/agent/session.ts";
import { loadConfig } from "../../src/core/config/load.ts";
import { silentLogger } from "../../src/core/log.ts";
import type { EnrollmentState } from "../../src/enrollment/state.ts";
import { enrollDirect } from "../helpers/enroll-direct.ts";
import { Stack } from "../helpers/stack.ts";
import { waitFor } from "../router/harness.ts";

describe("clock_skew from one ack's timing", () => {
  const at = (sentAtMs: number, receivedAtMs: number, routerTimeMs: number) => ({
    sentAtMs,
    receivedAtMs,
    routerTimeMs,
  });

  test("the router's time is taken at the middle of the round trip", () => {
    assert.equal(clockOffsetMs(at(1000, 1200, 1100)), 0);
    assert.equal(clockOffsetMs(at(1000, 1200, 9100)), 8000);
  });

  test("within 5 s is no condition; past it, degraded, saying by how much and which way, with the NTP fix", () => {
    assert.equal(CLOCK_SKEW_BOUND_MS, 5000);
    assert.equal(clockSkewFinding(at(0, 100, 50 + 5000)), undefined, "exactly at the bound");
    assert.equal(clockSkewFinding(at(0, 100, 50 - 4999)), undefined);
    const behind = clockSkewFinding(at(0, 100, 50 + 8000));
    assert.ok(behind && behind !== "unknown");
    assert.equal(behind.condition, "clock_skew");
    assert.equal(behind.severity, "degraded");
    assert.match(behind.message, /this node's clock is 8\.0 s behind the router's/);
    assert.match(behind.fix, /NTP/);
    const ahead = clockSkewFinding(at(100_000, 100_200, 100_100 - 42_000));
    assert.ok(ahead && ahead !== "unknown");
    assert.match(ahead.message, /42\.0 s ahead of the router's/);
  });

  test("a round trip longer than the bound, or one the node's clock ran backwards over, decides nothing", () => {
    assert.equal(clockSkewFinding(at(0, 6000, 60_000)), "unknown");
    assert.equal(clockSkewFinding(at(1000, 900, 60_000)), "unknown");
  });
});

describe("clock_skew between a node and a real router", { timeout: 60_000 }, () => {
  let stack: Stack | undefined;
  let session: NodeSession | undefined;
  after(async () => {
    await session?.stop();
    await stack?.close();
  });

  test("a node 30 s behind reports clock_skew in its renewals; it clears once its clock agrees", async () => {
    stack = await Stack.start();
    const service = stack.service;
    const identity = enrollDirect(service.store);
    let skewMs = -30_000;
    const now = () => Date.now() + skewMs;
    const { config } = loadConfig({ env: {}, cwd: stack.dir });
    const conditions = new NodeConditions({ config, env: {}, logger: silentLogger(), checks: [], now });
    session = new NodeSession({
      state: {
        nodeId: identity.nodeId,
        keys: identity.keys,
        routerPublicKey: service.identity.curve.publicKey,
        controlEndpoint: service.controlPlane.controlEndpoint,
        streamingEndpoint: service.controlPlane.streamingEndpoint,
      } as EnrollmentState,
      settings: {
        leaseRenewalIntervalMs: 100,
        leaseDurationMs: 10_000,
        streamingSocketEnabled: true,
        maxConcurrent: 2,
      },
      logger: silentLogger(),
      conditions: () => conditions.current(),
      onRouterClock: conditions.routerClock,
      now,
    });
    void session.start();
    const atRouter = () => service.controlPlane.lease(identity.nodeId)?.conditions ?? [];

    // Renewals every 100 ms: the router has the condition within a few of them (10 s for a loaded machine).
    const [skew] = await waitFor(() => atRouter().length > 0 && atRouter(), {
      timeoutMs: 10_000,
      what: "clock_skew at the router",
    });
    assert.equal(skew.condition, "clock_skew");
    assert.equal(skew.severity, "degraded");
    assert.match(skew.message, /this node's clock is (29|30)\.\d s behind the router's/);

    skewMs = 0;
    await waitFor(() => atRouter().length === 0, {
      timeoutMs: 10_000,
      what: "clock_skew cleared at the router",
    });
    assert.deepEqual(conditions.current(), []);
  });
});
