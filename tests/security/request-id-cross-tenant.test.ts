/**
 * Attack: one tenant takes over another's completion through X-Request-ID.
 * Two tenants of one project send the same X-Request-ID (chosen, or
 * predicted from the ids the router hands out) while both requests are in
 * flight; whichever way they are placed (parked in the queue, or
 * dispatched together), each client must get exactly the answer to its
 * own prompt. The engine's gate (request-id-harness.ts) keeps both
 * requests in flight until the test has seen them dispatched, so the
 * scenario never depends on timing.
 */
import assert from "node:assert/strict";
import { afterEach, beforeEach, describe, test } from "node:test";
import { waitFor } from "../router/harness.ts";
import {
  chatRequest,
  expectedContent,
  type GatedStack,
  heldRequest,
  sendRequest,
  settledContent,
  startGatedStack,
} from "./request-id-harness.ts";

const VICTIM_PROMPT = "my private medical history, please summarise it";
const ATTACKER_PROMPT = "hello";

describe("X-Request-ID across tenants", { timeout: 120_000 }, () => {
  // A stack per test: an attack that succeeds leaves streams and slots taken that would skew the next test.
  let g: GatedStack;
  let victimKey: string;
  let attackerKey: string;
  let otherKey: string;
  let victimAnswer: string;
  let attackerAnswer: string;

  beforeEach(async () => {
    // Two slots: two requests can be dispatched to the node at the same time.
    g = await startGatedStack(2);
    victimKey = g.stack.apiKey("default", "victim");
    attackerKey = g.stack.apiKey("default", "attacker");
    otherKey = g.stack.apiKey("default", "bystander");
    victimAnswer = await expectedContent(g.engine, VICTIM_PROMPT);
    attackerAnswer = await expectedContent(g.engine, ATTACKER_PROMPT);
    assert.notEqual(victimAnswer, attackerAnswer, "the two prompts must have different answers");
  });

  afterEach(async () => {
    g?.engine.open();
    await g?.stack.close();
  });

  const auth = (key: string, requestId?: string): Record<string, string> => ({
    authorization: `Bearer ${key}`,
    ...(requestId !== undefined ? { "x-request-id": requestId } : {}),
  });

  /** Fill both slots with requests parked at the engine, so the next ones wait in the router's queue. */
  async function fillSlots() {
    g.engine.hold();
    const blockers = [1, 2].map((i) => sendRequest(g.stack.url, auth(otherKey), chatRequest(`blocker ${i}`)));
    await waitFor(() => g.engine.held === 2, { timeoutMs: 10_000, what: "two blockers at the engine" });
    return blockers;
  }

  /** Free the slots: the queued requests are dispatched together and wait at the engine's gate. */
  async function dispatchQueued(): Promise<void> {
    await waitFor(() => g.stack.service.scheduler.queued(g.node.nodeId) === 2, {
      timeoutMs: 10_000,
      what: "both requests to wait in the router's queue",
    });
    g.engine.releaseHeld();
    await waitFor(() => g.stack.service.scheduler.queued(g.node.nodeId) === 0, {
      timeoutMs: 10_000,
      what: "both queued requests to be dispatched",
    });
  }

  test("two tenants sending the same X-Request-ID while both wait in the queue each get their own answer", async () => {
    const blockers = await fillSlots();
    const arrivedBefore = g.engine.arrived.length;
    const victim = sendRequest(g.stack.url, auth(victimKey, "shared-id"), chatRequest(VICTIM_PROMPT));
    const attacker = sendRequest(g.stack.url, auth(attackerKey, "shared-id"), chatRequest(ATTACKER_PROMPT));
    await dispatchQueued();
    g.engine.open();
    assert.equal(await settledContent(victim), victimAnswer, "the victim got its own answer");
    assert.equal(await settledContent(attacker), attackerAnswer, "the attacker got its own answer");
    // The client's id is echoed to it, never used to route: the engine saw two distinct ids of the router's.
    assert.equal((await victim).requestIdHeader, "shared-id");
    assert.equal((await attacker).requestIdHeader, "shared-id");
    const engineIds = g.engine.arrived.slice(arrivedBefore);
    assert.equal(engineIds.length, 2, `the engine got both requests: ${JSON.stringify(engineIds)}`);
    assert.notEqual(engineIds[0], engineIds[1]);
    assert.ok(
      !engineIds.includes("shared-id"),
      "the client's X-Request-ID never reaches the engine as its id",
    );
    for (const b of blockers) assert.equal((await b).status, 200);
  });

  test("two tenants sending the same X-Request-ID at the same moment, dispatched together, each get their own answer", async () => {
    g.engine.hold();
    const victim = heldRequest(g.stack.url, auth(victimKey, "same-moment"), chatRequest(VICTIM_PROMPT));
    const attacker = heldRequest(g.stack.url, auth(attackerKey, "same-moment"), chatRequest(ATTACKER_PROMPT));
    // Both handlers have read their headers (and taken their request ids) before either body is sent.
    await Promise.all([victim.continued, attacker.continued]);
    victim.send();
    attacker.send();
    await waitFor(() => g.stack.service.scheduler.inflight(g.node.nodeId) === 2, {
      timeoutMs: 10_000,
      what: "both requests dispatched to the node",
    });
    g.engine.open();
    assert.equal(await settledContent(victim.answer), victimAnswer, "the victim got its own answer");
    assert.equal(await settledContent(attacker.answer), attackerAnswer, "the attacker got its own answer");
  });

  test("a client that predicts the id the router will give the next request cannot take over that request's stream", async () => {
    const blockers = await fillSlots();
    // What the attacker can see without a key: the id the router gave its /health request.
    const health = await fetch(`${g.stack.url}/health`, { signal: AbortSignal.timeout(10_000) });
    await health.arrayBuffer();
    const seen = health.headers.get("x-request-id") ?? "";
    // A prefix and a counter (the old scheme): the next id is the counter plus one.
    const counter = /^(req-.{12})([0-9a-z]+)$/.exec(seen);
    const predicted = counter
      ? `${counter[1]}${(Number.parseInt(counter[2], 36) + 1).toString(36)}`
      : `${seen}x`;
    const attacker = sendRequest(g.stack.url, auth(attackerKey, predicted), chatRequest(ATTACKER_PROMPT));
    await waitFor(() => g.stack.service.scheduler.queued(g.node.nodeId) === 1, {
      timeoutMs: 10_000,
      what: "the attacker's request to wait in the queue",
    });
    const victim = sendRequest(g.stack.url, auth(victimKey), chatRequest(VICTIM_PROMPT));
    await dispatchQueued();
    g.engine.open();
    assert.equal(await settledContent(victim), victimAnswer, "the victim got its own answer");
    assert.equal(
      await settledContent(attacker),
      attackerAnswer,
      "the attacker did not get the victim's answer",
    );
    assert.notEqual((await victim).requestIdHeader, predicted, "the router's ids cannot be predicted");
    for (const b of blockers) assert.equal((await b).status, 200);
  });
});
