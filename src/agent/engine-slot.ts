/**
 * @module The node's one engine slot: the engine serving now, its first
 * start (once, on the first registration: the Xerotier documentation starts
 * the initial model "immediately after registration", and never again
 * because the router went away), and the swap to an assigned model. A swap
 * builds the new engine first (a bad model fails there and the old engine
 * keeps serving), routes new requests to it (refused while it loads), lets
 * the old engine's in-flight streams finish (up to the drain grace, or
 * until the second signal), stops the old engine (its GPU memory is needed)
 * and starts the new one. Every engine state change and restart is
 * reported to the router at once, with the failure's cause and log tail.
 */
import type { Config } from "../core/config/schema.ts";
import { guarded } from "../core/guard.ts";
import type { Logger } from "../core/log.ts";
import type { Engine, EngineRestart, EngineStatus } from "../engine/engine.ts";
import { ModelCache } from "../models/cache.ts";
import { type NodeMetrics, setEngineState } from "../observability/node-metrics.ts";
import type { NodeMessageOf, NodeStatus } from "../protocol/messages.ts";
import type { NodeConditions } from "./conditions/node-conditions.ts";
import { createLaunchEngine, type Launch } from "./engine-setup.ts";

/** What a node_status says of an engine failure or restart. */
export type EngineReport = NodeMessageOf<"node_status">["detail"];

/** An engine and what its restarts changed (a fallback), for the report to the router. */
export interface SlotEngine {
  engine: Engine;
  fallbackAt?: (restarts: number) => string | undefined;
}

export interface AssignedModel {
  name: string;
  path: string;
  alreadyCached: boolean;
}

export interface EngineSlotOptions {
  config: Config;
  logger: Logger;
  env: Record<string, string | undefined>;
  metrics: NodeMetrics;
  /** What to serve for an assigned model once it is in the cache. */
  launchFor: (model: { name: string; path: string }) => Promise<Launch>;
  /** Tell the router now (node_status), with the failure when there is one. */
  report: (detail?: EngineReport) => void;
  /** The engine's state changed (the node's state follows). */
  onChange: () => void;
  /** Resolves when the streams running now have ended, or after `graceMs`, or on `stopNow`. */
  settleStreams: (graceMs: number, stopNow?: AbortSignal) => Promise<void>;
  /** The second signal: stop waiting for streams. */
  hardStop?: AbortSignal;
  /** The node's conditions (conditions/node-conditions.ts): the engine's events feed its engine conditions. */
  conditions?: Pick<NodeConditions, "engine" | "gpuProbe">;
}

const tail = (lines: string[]) => lines.slice(-200).map((l) => l.slice(0, 4096));

export class EngineSlot {
  readonly #o: EngineSlotOptions;
  readonly #log: Logger;
  readonly #initial: Engine | undefined;
  readonly #fallbacks = new WeakMap<Engine, (restarts: number) => string | undefined>();
  readonly #cache: ModelCache;
  #engine: Engine | undefined;
  #initialStarted = false;
  /** While the old engine finishes and stops, the new one is not started yet ("stopped"): report it as loading. */
  #swapping = false;
  /** The assigned model the engine was last started with (its cache folder), and its in-use marker. */
  #served: { name: string; path: string } | undefined;
  #inUse: { release: () => Promise<void> } | undefined;
  readonly #onState: (s: EngineStatus) => void;
  readonly #onRestart: (r: EngineRestart) => void;
  readonly #onLiveness: (misses: number) => void;

  constructor(o: EngineSlotOptions, initial: SlotEngine | undefined) {
    this.#o = o;
    this.#log = o.logger.child({ component: "node" });
    this.#onState = guarded(this.#log, "reporting the engine state", (s: EngineStatus) =>
      this.#stateChanged(s),
    );
    this.#onRestart = guarded(this.#log, "reporting an engine restart", (r: EngineRestart) =>
      this.#restarted(r),
    );
    this.#onLiveness = guarded(this.#log, "reporting the engine's liveness", (misses: number) =>
      o.conditions?.engine.liveness(misses),
    );
    this.#cache = new ModelCache(o.config);
    this.#initial = initial?.engine;
    if (initial) this.#attach(initial);
  }

  /** The engine requests go to now (undefined: no model yet). */
  get engine(): Engine | undefined {
    return this.#engine;
  }

  get ready(): boolean {
    return this.#engine?.state === "ready" && !this.#swapping;
  }

  /** The relay's status, with the engine read as loading during a swap. */
  status(relayStatus: NodeStatus): NodeStatus {
    return this.#swapping && relayStatus.engine !== "ready"
      ? { ...relayStatus, engine: "loading" }
      : relayStatus;
  }

  /** Why the engine cannot serve now, for /readyz; empty when it can. */
  notReadyReasons(): string[] {
    const engine = this.#engine;
    if (!engine) return ["no engine: no model assigned yet"];
    if (engine === this.#initial && !this.#initialStarted) return ["engine waits for the registration"];
    return engine.state === "ready" ? [] : [`engine ${engine.state}`];
  }

  /** Start the initial engine: on the first registration only, and not once an assigned model replaced it. */
  startInitial(): void {
    const initial = this.#initial;
    if (this.#initialStarted || !initial) return;
    this.#initialStarted = true;
    if (this.#engine !== initial) return;
    this.#log.info(
      { engine: initial.kind, model: initial.servedModelName },
      "registered: starting the engine",
    );
    initial.start().catch((err: unknown) => this.#log.error({ err }, "the engine could not be started"));
  }

  /** Serve an assigned model (ModelAssignments' `serve`): throws with the reason when it cannot. */
  async serve(model: AssignedModel): Promise<void> {
    // The same files the engine already serves (the model assigned again): a restart would only
    // take the node out of service while the engine loads them again.
    const running = this.#engine?.state === "ready" || this.#engine?.state === "loading";
    const same = this.#served?.name === model.name && this.#served.path === model.path;
    if (model.alreadyCached && running && same) {
      this.#log.info(
        { model: model.name },
        "the assigned model is the one being served: the engine keeps running",
      );
      return;
    }
    const launched = await createLaunchEngine(await this.#o.launchFor(model), this.#o.config, {
      logger: this.#o.logger,
      env: this.#o.env,
      gpuProbe: this.#o.conditions?.gpuProbe,
    });
    const marker = await this.#cache.markInUse(model.name);
    this.#swapping = true;
    try {
      await this.#swapTo({ engine: launched.engine, fallbackAt: launched.fallbackAt }, marker, model);
    } finally {
      this.#swapping = false;
      this.#o.onChange();
    }
  }

  /** Stop the engine (2 s when stopping at once, else 10 s) and let go of the model it served. */
  async stop(): Promise<void> {
    const engine = this.#engine;
    if (engine) {
      this.#log.info("stopping the engine");
      await engine.stop(this.#o.hardStop?.aborted ? 2000 : 10_000).catch((err: unknown) => {
        this.#log.warn({ err }, "stopping the engine failed");
      });
      this.#detach(engine);
    }
    await this.#inUse?.release().catch(() => undefined);
  }

  async #swapTo(
    next: SlotEngine,
    marker: { release: () => Promise<void> },
    model: { name: string; path: string },
  ): Promise<void> {
    const old = this.#engine;
    this.#attach(next);
    this.#o.report();
    this.#o.onChange();
    if (old) {
      this.#log.info(
        { from: old.servedModelName, to: model.name },
        "replacing the engine: waiting for in-flight requests, then stopping the old engine",
      );
      // New requests already go to the new engine (refused while it loads): the streams running now are the old one's.
      await this.#o.settleStreams(this.#o.config.drainGraceSeconds * 1000, this.#o.hardStop);
      this.#detach(old);
      await old
        .stop(10_000)
        .catch((err: unknown) => this.#log.warn({ err }, "stopping the old engine failed"));
    }
    await this.#inUse?.release().catch(() => undefined);
    this.#inUse = marker;
    this.#log.info(
      { model: model.name, path: model.path, engine: next.engine.kind },
      "starting the engine with the assigned model",
    );
    this.#served = { name: model.name, path: model.path };
    await next.engine.start();
  }

  #attach({ engine, fallbackAt }: SlotEngine): void {
    this.#engine = engine;
    if (fallbackAt) this.#fallbacks.set(engine, fallbackAt);
    engine.on("state", this.#onState);
    engine.on("restart", this.#onRestart);
    engine.on("liveness", this.#onLiveness);
    setEngineState(this.#o.metrics, engine.state);
  }

  #detach(engine: Engine): void {
    engine.off("state", this.#onState);
    engine.off("restart", this.#onRestart);
    engine.off("liveness", this.#onLiveness);
  }

  #stateChanged(s: EngineStatus): void {
    setEngineState(this.#o.metrics, s.state);
    this.#o.conditions?.engine.state(s);
    const f = s.state === "failed" ? s.lastFailure : undefined;
    this.#o.report(
      f
        ? {
            reason: f.cause,
            message: `${f.summary}: ${f.hint}`.slice(0, 4000),
            exitCode: f.exitCode,
            logTail: tail(f.lastLines),
          }
        : undefined,
    );
    this.#o.onChange();
  }

  #restarted(r: EngineRestart): void {
    this.#o.metrics.engineRestarts.inc({ cause: r.failure.cause });
    this.#o.conditions?.engine.restart(r);
    const fallback = this.#engine ? this.#fallbacks.get(this.#engine)?.(r.restarts) : undefined;
    this.#o.report({
      reason: r.failure.cause,
      message: `engine exited (${r.failure.summary}); restart ${r.restarts} in ${r.delayMs} ms${fallback ? `: ${fallback}` : ""}`,
      exitCode: r.failure.exitCode,
      logTail: tail(r.failure.lastLines),
    });
  }
}
