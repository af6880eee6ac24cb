/**
 * The node's state machine (src/agent/node-state.ts): the serving states
 * follow the lease and the engine, draining and stopped only move forward,
 * every transition is logged once and reaches the listeners, and a
 * transition the table does not allow is refused without throwing.
 */
import assert from "node:assert/strict";
import { Writable } from "node:stream";
import { test } from "node:test";
import { NODE_TRANSITIONS, NodeStateMachine, servingState } from "../../src/agent/node-state.ts";
import { createLogger } from "../../src/core/log.ts";
import { NODE_STATES } from "../../src/protocol/conditions.ts";

function recorded(): { machine: NodeStateMachine; lines: () => { msg: string; level: string }[] } {
  const out: string[] = [];
  const destination = new Writable({
    write(chunk, _enc, done) {
      out.push(chunk.toString());
      done();
    },
  });
  const machine = new NodeStateMachine(createLogger({ level: "info", destination }));
  return {
    machine,
    lines: () =>
      out
        .join("")
        .split("\n")
        .filter(Boolean)
        .map((l) => JSON.parse(l)),
  };
}

test("the table names every state and nothing leaves stopped", () => {
  assert.deepEqual(Object.keys(NODE_TRANSITIONS).sort(), [...NODE_STATES].sort());
  assert.deepEqual(NODE_TRANSITIONS.stopped, []);
  assert.deepEqual(NODE_TRANSITIONS.draining, ["stopped"]);
});

test("the serving states follow the lease and the engine", () => {
  assert.equal(servingState({ leaseHeld: false, engineReady: true }), "registering");
  assert.equal(servingState({ leaseHeld: true, engineReady: false }), "loading");
  assert.equal(servingState({ leaseHeld: true, engineReady: true }), "ready");
});

test("a node's life: each transition logged once and told to the listeners; draining is not undone", () => {
  const { machine, lines } = recorded();
  const seen: string[] = [];
  machine.onChange((to, from) => seen.push(`${from}->${to}`));
  machine.follow({ leaseHeld: true, engineReady: true }, "ignored while enrolling");
  assert.equal(machine.state, "enrolling");
  machine.to("registering", "enrolled");
  machine.follow({ leaseHeld: true, engineReady: false }, "registered");
  machine.follow({ leaseHeld: true, engineReady: false }, "renewed");
  machine.follow({ leaseHeld: true, engineReady: true }, "engine ready");
  machine.follow({ leaseHeld: false, engineReady: true }, "lease lost");
  machine.follow({ leaseHeld: true, engineReady: true }, "registered");
  machine.to("draining", "stop signal");
  machine.follow({ leaseHeld: true, engineReady: true }, "engine ready again");
  machine.to("stopped", "done");
  const expected = [
    "enrolling->registering",
    "registering->loading",
    "loading->ready",
    "ready->registering",
    "registering->ready",
    "ready->draining",
    "draining->stopped",
  ];
  assert.deepEqual(seen, expected);
  const logged = lines().filter((l) => l.msg.startsWith("node state: "));
  assert.deepEqual(
    logged.map((l) => l.msg),
    expected.map((t) => `node state: ${t.replace("->", " -> ")}`),
  );
});

test("a transition the table does not allow is logged as an error and ignored; a failing listener is contained", () => {
  const { machine, lines } = recorded();
  machine.onChange(() => {
    throw new Error("listener bug");
  });
  assert.equal(machine.to("ready", "skipping registration"), false);
  assert.equal(machine.state, "enrolling");
  assert.equal(machine.to("registering", "enrolled"), true, "a throwing listener does not undo the move");
  assert.equal(machine.state, "registering");
  const errors = lines().filter((l) => l.level === "error");
  assert.ok(errors.some((l) => /does not allow/.test(l.msg)));
  assert.ok(errors.some((l) => /listener failed/.test(l.msg)));
});
