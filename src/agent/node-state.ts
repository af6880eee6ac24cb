/**
 * @module The node's lifecycle as one state machine: enrolling ->
 * registering -> loading -> ready -> draining -> stopped (NODE_STATES in
 * src/protocol/conditions.ts). `registering`, `loading` and `ready` follow
 * the facts (is a lease held, is the engine ready) and move back and forth
 * as the router comes and goes or a model is swapped; `draining` and
 * `stopped` only move forward. Every transition is logged once, with its
 * reason, and handed to the listeners (the node sends a node_status at once
 * and /readyz shows the state). A transition the table does not allow is a
 * bug: it is logged and ignored, never thrown into a caller's callback.
 */
import type { Logger } from "../core/log.ts";
import type { NodeState } from "../protocol/conditions.ts";

/** Which state may follow which. */
export const NODE_TRANSITIONS: Readonly<Record<NodeState, readonly NodeState[]>> = {
  enrolling: ["registering", "stopped"],
  registering: ["loading", "ready", "draining", "stopped"],
  loading: ["registering", "ready", "draining", "stopped"],
  ready: ["registering", "loading", "draining", "stopped"],
  draining: ["stopped"],
  stopped: [],
};

/** What the session and the engine say now; the serving states follow from it. */
export interface ServingFacts {
  leaseHeld: boolean;
  engineReady: boolean;
}

/** The serving state the facts call for: no lease, registering; a lease and no ready engine, loading. */
export function servingState(facts: ServingFacts): "registering" | "loading" | "ready" {
  if (!facts.leaseHeld) return "registering";
  return facts.engineReady ? "ready" : "loading";
}

export type NodeStateListener = (state: NodeState, from: NodeState) => void;

export class NodeStateMachine {
  #state: NodeState = "enrolling";
  readonly #log: Logger;
  readonly #listeners: NodeStateListener[] = [];

  constructor(logger: Logger) {
    this.#log = logger.child({ component: "node-state" });
  }

  get state(): NodeState {
    return this.#state;
  }

  /** Called after each transition (never for a state the node is already in). */
  onChange(listener: NodeStateListener): void {
    this.#listeners.push(listener);
  }

  /** Move to `next` when the table allows it; false when it did not move. */
  to(next: NodeState, reason: string): boolean {
    const from = this.#state;
    if (next === from) return false;
    if (!NODE_TRANSITIONS[from].includes(next)) {
      this.#log.error(
        { from, to: next, reason },
        "a node state transition the lifecycle does not allow; ignored",
      );
      return false;
    }
    this.#state = next;
    this.#log.info({ from, to: next, reason }, `node state: ${from} -> ${next}`);
    for (const listener of this.#listeners) {
      try {
        listener(next, from);
      } catch (err) {
        this.#log.error({ err, state: next }, "a node state listener failed");
      }
    }
    return true;
  }

  /**
   * While serving (registering, loading, ready), follow the facts; once
   * draining or stopped, the facts no longer move the node.
   */
  follow(facts: ServingFacts, reason: string): void {
    if (this.#state === "draining" || this.#state === "stopped" || this.#state === "enrolling") return;
    this.to(servingState(facts), reason);
  }
}
