/**
 * @module Conditions the engine's supervisor shows rather than a doctor
 * check: `engine_crash_loop` (CRASH_LOOP_EXITS exits within
 * CRASH_LOOP_WINDOW_MS; the supervisor backs off and, after its own limit,
 * gives up) and `engine_unresponsive` (a ready engine whose /health misses
 * while its process lives; the supervisor kills it after three misses).
 * The crash loop clears once fewer than CRASH_LOOP_EXITS exits lie within
 * the window (looked at on each engine event and by a timer when the
 * oldest exit leaves the window), so it neither flickers off at the next
 * short-lived start nor outlives the loop. The node feeds it the events of
 * whichever engine serves now (an assigned model replaces the engine); the
 * clock is injected.
 */
import type { EngineRestart, EngineStatus } from "../../engine/engine.ts";
import type { ConditionMonitor } from "./monitor.ts";

export const CRASH_LOOP_EXITS = 5;
export const CRASH_LOOP_WINDOW_MS = 60_000;

const CRASH_LOOP_SOURCE = "engine:crash-loop";
const UNRESPONSIVE_SOURCE = "engine:liveness";

export class EngineConditions {
  readonly #monitor: Pick<ConditionMonitor, "set">;
  readonly #now: () => number;
  /** When the engine's recent runs ended (epoch ms of the failure). */
  #exits: number[] = [];
  #recheck: NodeJS.Timeout | undefined;
  /** The latest exit's summary, for the message. */
  #summary = "";
  /** Whether a raised crash loop ended with the supervisor giving up: it then holds until the next start. */
  #gaveUp = false;
  #raised = false;

  constructor(monitor: Pick<ConditionMonitor, "set">, now: () => number = Date.now) {
    this.#monitor = monitor;
    this.#now = now;
  }

  /** A run ended and the supervisor restarts it. */
  restart(r: EngineRestart): void {
    this.#exit(r.failure.at, r.failure.summary);
  }

  /** Every state change: a run that gave up counts as an exit; a ready engine ends the loop and any miss. */
  state(s: EngineStatus): void {
    if (s.state === "failed" && s.lastFailure && !this.#exits.includes(s.lastFailure.at)) {
      this.#exit(s.lastFailure.at, s.lastFailure.summary);
    }
    if (s.state !== "ready") this.#monitor.set(UNRESPONSIVE_SOURCE, undefined);
    if (s.state === "stopped") this.#exits = [];
    this.#gaveUp = s.state === "failed";
    this.#evaluate();
  }

  /** Stops the re-check timer (the node is stopping). */
  close(): void {
    clearTimeout(this.#recheck);
  }

  /** /health misses in a row of a ready engine. */
  liveness(misses: number): void {
    this.#monitor.set(
      UNRESPONSIVE_SOURCE,
      misses === 0
        ? undefined
        : {
            condition: "engine_unresponsive",
            severity: "degraded",
            message: `the engine's process runs but GET /health failed ${misses} time${misses === 1 ? "" : "s"} in a row`,
            fix: "The node restarts an engine that keeps missing; if it recurs, look for a stuck GPU (`nvidia-smi`, `dmesg | grep -i xid`) and the engine's last lines in the node's log.",
          },
    );
  }

  #exit(at: number, summary: string): void {
    this.#exits.push(at);
    this.#summary = summary;
    this.#evaluate();
  }

  #evaluate(): void {
    const now = this.#now();
    this.#exits = this.#exits.filter((t) => t > now - CRASH_LOOP_WINDOW_MS);
    clearTimeout(this.#recheck);
    if (this.#exits.length < CRASH_LOOP_EXITS) {
      if (this.#raised && this.#gaveUp) return;
      this.#raised = false;
      this.#monitor.set(CRASH_LOOP_SOURCE, undefined);
      return;
    }
    this.#raised = true;
    // Looked at again when the oldest exit leaves the window.
    this.#recheck = setTimeout(() => this.#evaluate(), this.#exits[0] + CRASH_LOOP_WINDOW_MS - now + 1);
    this.#recheck.unref();
    const summary = this.#summary;
    this.#monitor.set(CRASH_LOOP_SOURCE, {
      condition: "engine_crash_loop",
      severity: "blocking",
      message: `the engine exited ${this.#exits.length} times within ${CRASH_LOOP_WINDOW_MS / 1000} s (last: ${summary})`,
      fix: "Read the engine's last lines in the node's log (`xim doctor --check engine` checks the usual causes); the node backs off between restarts and serves again once the engine stays up.",
    });
  }
}
