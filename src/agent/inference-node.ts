/**
 * @module `xim run` as a library: the engine, the relay, the metrics
 * server and the session with the router, wired together. The initial
 * model's engine starts once the node is registered (the Xerotier
 * documentation: "immediately after registration"), so a node that cannot
 * enroll or reach its router never loads a model onto the GPU; it never
 * restarts because the router went away later; its state (loading, ready,
 * failed with the cause) and the free slots reach the router as soon as
 * they change. The first SIGTERM (`signal`) drains: the router is told at
 * once, in-flight streams get DRAIN_GRACE_SECONDS, then the engine stops
 * and the call returns. A second one (`hardStop`) cancels the streams
 * and stops at once. A model the router assigns (`model_assign`) is pulled
 * while the current engine serves (model-assignment.ts); then new requests
 * stop, in-flight ones finish (up to the drain grace), the old engine stops
 * and one serving the new model starts.
 */
import type { Config } from "../core/config/schema.ts";
import { guarded } from "../core/guard.ts";
import type { Logger } from "../core/log.ts";
import { DEFAULT_SALT_SECRET_WARNING, isDefaultSaltSecret } from "../engine/cache-salt.ts";
import type { Engine, EngineRestart, EngineStatus } from "../engine/engine.ts";
import { ModelCache } from "../models/cache.ts";
import { type HealthServer, startHealthServer } from "../observability/health-server.ts";
import { createNodeMetrics, type NodeMetrics, setEngineState } from "../observability/node-metrics.ts";
import { TotalsDelta } from "../observability/totals.ts";
import { deriveMaxConcurrent } from "../planner/max-concurrent.ts";
import type { Hardware } from "../protocol/messages.ts";
import { NodeConditions } from "./conditions/node-conditions.ts";
import { createLaunchEngine, describeAssignedLaunch, type Launch } from "./engine-setup.ts";
import { ModelAssignments } from "./model-assignment.ts";
import { Relay } from "./relay.ts";
import { type NodeSession, runNode } from "./session.ts";

export interface InferenceNodeOptions {
  config: Config;
  logger: Logger;
  /** What to serve (describeLaunch); undefined: register and serve nothing yet. */
  launch: Launch | undefined;
  /** Aborted on the first SIGTERM/SIGINT: drain. */
  signal: AbortSignal;
  /** Aborted on the second: cancel in-flight streams and stop now. */
  hardStop?: AbortSignal;
  env: Record<string, string | undefined>;
  /** An engine made by the caller (tests: an in-process SimulatedEngine) instead of the launch's; started after registration too. */
  engine?: Engine;
  hardware?: Hardware;
  metrics?: NodeMetrics;
  /** Called once the relay exists (tests read its stream stats). */
  onRelay?: (relay: Relay) => void;
  /** Called once the metrics server listens. */
  onMetrics?: (server: HealthServer) => void;
  /**
   * What to serve for a model the router assigned, once it is in the cache
   * (default: describeAssignedLaunch with no setting counted as explicit;
   * `xim run` passes the operator's explicit settings).
   */
  launchFor?: (model: { name: string; path: string }) => Promise<Launch>;
  /** Called once the model-assignment handler exists (tests follow its pulls). */
  onAssignments?: (assignments: ModelAssignments) => void;
}

export async function runInferenceNode(
  o: InferenceNodeOptions,
): Promise<{ nodeId: string; enrolled: boolean }> {
  const { config, logger } = o;
  const log = logger.child({ component: "node" });
  if (isDefaultSaltSecret(config)) log.warn(DEFAULT_SALT_SECRET_WARNING);
  const metrics = o.metrics ?? createNodeMetrics();
  let session: NodeSession | undefined;
  const conditions = new NodeConditions({
    config,
    env: o.env,
    logger,
    metrics,
    onChange: () => void session?.reportStatus(),
    engineUrl: () => (engine?.state === "ready" ? engine.baseUrl : undefined),
  });
  let engine = o.engine;
  let planned: number | null | undefined;
  /** What each engine's restarts changed (a fallback), for the status detail sent to the router. */
  const fallbacks = new WeakMap<Engine, (restarts: number) => string | undefined>();
  if (!engine && o.launch) {
    const launched = await createLaunchEngine(o.launch, config, {
      logger,
      env: o.env,
      gpuProbe: conditions.gpuProbe,
    });
    engine = launched.engine;
    fallbacks.set(engine, launched.fallbackAt);
    planned = launched.currentPlan()?.maxConcurrent;
  }
  const relay = new Relay({
    engine: () => engine,
    send: (m) => (session ? session.send(m) : Promise.resolve(false)),
    flow: config,
    maxConcurrent: deriveMaxConcurrent(config, planned, o.launch?.hardware?.gpus),
    saltSecret: config.vllmSaltSecret,
    logger,
    metrics,
    onSlotsChange: () => void session?.reportStatus(),
  });
  o.onRelay?.(relay);
  log.info(
    {
      engine: engine?.kind ?? "none",
      model: engine?.servedModelName,
      maxConcurrent: relay.maxConcurrent,
      flowControl: config.flowControlEnabled,
      windowBytes: config.flowControlWindowBytes,
    },
    engine
      ? "registering with the router; the engine starts once registered"
      : "no model to serve yet: registering without an engine",
  );

  const onState = guarded(log, "reporting the engine state", (s: EngineStatus) => {
    setEngineState(metrics, s.state);
    conditions.engine.state(s);
    const f = s.state === "failed" ? s.lastFailure : undefined;
    void session?.reportStatus(
      f
        ? {
            reason: f.cause,
            message: `${f.summary}: ${f.hint}`.slice(0, 4000),
            exitCode: f.exitCode,
            logTail: f.lastLines.slice(-200).map((l) => l.slice(0, 4096)),
          }
        : undefined,
    );
  });
  const onRestart = guarded(log, "reporting an engine restart", (r: EngineRestart) => {
    metrics.engineRestarts.inc({ cause: r.failure.cause });
    conditions.engine.restart(r);
    const fallback = engine ? fallbacks.get(engine)?.(r.restarts) : undefined;
    void session?.reportStatus({
      reason: r.failure.cause,
      message: `engine exited (${r.failure.summary}); restart ${r.restarts} in ${r.delayMs} ms${fallback ? `: ${fallback}` : ""}`,
      exitCode: r.failure.exitCode,
      logTail: r.failure.lastLines.slice(-200).map((l) => l.slice(0, 4096)),
    });
  });
  engine?.on("state", onState);
  engine?.on("restart", onRestart);
  const onLiveness = (misses: number) => conditions.engine.liveness(misses);
  engine?.on("liveness", onLiveness);
  if (engine) setEngineState(metrics, engine.state);
  // The initial engine starts on the first register_ack, once: not before the node is enrolled and
  // known to its router, and not again on a re-registration (the engine outlives the router's absence).
  const initial = engine;
  let initialStarted = false;
  const startInitialEngine = () => {
    if (initialStarted || !initial) return;
    initialStarted = true;
    if (engine !== initial) return; // an assigned model already replaced it
    log.info({ engine: initial.kind, model: initial.servedModelName }, "registered: starting the engine");
    initial.start().catch((err: unknown) => log.error({ err }, "the engine could not be started"));
  };

  // An assigned model replaces the engine: build the new one first (a bad
  // model fails here, and the old engine keeps serving), route new requests
  // to it (refused while it loads), let in-flight streams finish, stop the
  // old engine (its GPU memory is needed), start the new one.
  const cache = new ModelCache(config);
  let inUse: { release: () => Promise<void> } | undefined;
  // While the old engine finishes and stops, the new one is not started yet ("stopped"): report it as loading.
  let swapping = false;
  const status = () => {
    const s = relay.status();
    return swapping && s.engine !== "ready" ? { ...s, engine: "loading" as const } : s;
  };
  const launchFor =
    o.launchFor ??
    ((model: { name: string; path: string }) => describeAssignedLaunch(config, new Set(), o.env, model));
  /** The assigned model the engine was last started with (its cache folder). */
  let served: { name: string; path: string } | undefined;
  const serveModel = async (model: { name: string; path: string; alreadyCached: boolean }): Promise<void> => {
    // The same files the engine already serves (the model assigned again): a restart would only
    // take the node out of service while the engine loads them again.
    const running = engine?.state === "ready" || engine?.state === "loading";
    if (model.alreadyCached && running && served?.name === model.name && served.path === model.path) {
      log.info({ model: model.name }, "the assigned model is the one being served: the engine keeps running");
      return;
    }
    const launch = await launchFor(model);
    const launched = await createLaunchEngine(launch, config, {
      logger,
      env: o.env,
      gpuProbe: conditions.gpuProbe,
    });
    const next = launched.engine;
    fallbacks.set(next, launched.fallbackAt);
    const old = engine;
    const marker = await cache.markInUse(model.name);
    swapping = true;
    try {
      await swapTo(next, old, marker, model);
    } finally {
      swapping = false;
    }
  };
  const swapTo = async (
    next: Engine,
    old: Engine | undefined,
    marker: { release: () => Promise<void> },
    model: { name: string; path: string },
  ): Promise<void> => {
    engine = next;
    next.on("state", onState);
    next.on("restart", onRestart);
    next.on("liveness", onLiveness);
    setEngineState(metrics, next.state);
    void session?.reportStatus();
    if (old) {
      log.info(
        { from: old.servedModelName, to: model.name, inFlight: relay.maxConcurrent - relay.freeSlots },
        "replacing the engine: waiting for in-flight requests, then stopping the old engine",
      );
      const deadline = Date.now() + config.drainGraceSeconds * 1000;
      while (relay.freeSlots < relay.maxConcurrent && Date.now() < deadline && !o.hardStop?.aborted) {
        await new Promise((r) => setTimeout(r, 100));
      }
      old.off("state", onState);
      old.off("restart", onRestart);
      old.off("liveness", onLiveness);
      await old.stop(10_000).catch((err: unknown) => log.warn({ err }, "stopping the old engine failed"));
    }
    await inUse?.release().catch(() => undefined);
    inUse = marker;
    log.info(
      { model: model.name, path: model.path, engine: next.kind },
      "starting the engine with the assigned model",
    );
    served = { name: model.name, path: model.path };
    await next.start();
  };
  let assignments: ModelAssignments | undefined;

  let health: HealthServer | undefined;
  if (!config.disableMetricsServer) {
    try {
      health = await startHealthServer({
        host: config.metricsHost,
        port: config.metricsPort,
        registry: metrics.registry,
        logger: log,
        limits: config,
        readiness: () => {
          const reasons: string[] = [];
          if (!engine) reasons.push("no engine: no model assigned yet");
          else if (engine === initial && !initialStarted) reasons.push("engine waits for the registration");
          else if (engine.state !== "ready") reasons.push(`engine ${engine.state}`);
          if (!session?.lease) reasons.push("no lease with the router");
          reasons.push(...conditions.notReadyReasons());
          return { ready: reasons.length === 0, reasons, conditions: conditions.current() };
        },
      });
      log.info({ host: config.metricsHost, port: health.port }, "metrics server listening");
      o.onMetrics?.(health);
    } catch (err) {
      // The metrics server is an aid, not the node's job: serve inference without it.
      log.error(
        {
          err,
          hint: "Set XEROTIER_AGENT_METRICS_PORT to a free port, or XEROTIER_AGENT_DISABLE_METRICS_SERVER=1.",
        },
        `the metrics server could not listen on ${config.metricsHost}:${config.metricsPort}; running without /metrics, /healthz and /readyz`,
      );
    }
  }
  // The start-up checks, before registering: their conditions go with the registration.
  await conditions.start();
  const dropped = ["malformed", "oversized", "unknownType", "invalid", "versionMismatch"] as const;
  const totals = new TotalsDelta();
  const leaseGauge = setInterval(
    guarded(log, "the lease metrics", () => {
      metrics.leaseHeld.set(session?.lease ? 1 : 0);
      // The session counts; the metrics take the increments (a registration after the first is a reconnect).
      const stats = session?.leaseStats;
      if (stats) {
        metrics.leaseRenewals.inc({ result: "ok" }, totals.delta("renewalsAcked", stats.renewalsAcked));
        metrics.reconnects.inc(totals.delta("reconnects", Math.max(0, stats.registrations - 1)));
      }
      for (const reason of dropped) {
        metrics.framesDropped.inc({ reason }, totals.delta(reason, session?.counters[reason] ?? 0));
      }
    }),
    1000,
  );
  try {
    return await runNode({
      config,
      logger,
      signal: o.signal,
      hardware: o.hardware,
      status,
      conditions: () => conditions.current(),
      onMessage: (m) => {
        if (m.type === "model_assign") assignments?.handle(m);
        else if (m.type === "model_unassign") assignments?.withdraw(m.assignmentId);
        else relay.handle(m);
      },
      onSession: (s) => {
        session = s;
        assignments = new ModelAssignments({
          config,
          logger,
          channel: s.modelChannel(),
          report: (p) => s.reportModelProgress(p),
          serve: serveModel,
          metrics,
        });
        o.onAssignments?.(assignments);
      },
      onRegistered: (lease) => {
        relay.leaseBegan(lease.leaseId);
        startInitialEngine();
        assignments?.resend();
      },
      beforeStop: async (_s, graceMs) => {
        await relay.drain(graceMs, o.hardStop);
      },
    });
  } finally {
    clearInterval(leaseGauge);
    await conditions.stop();
    await assignments?.close();
    relay.cancelAll();
    if (engine) {
      log.info("stopping the engine");
      await engine.stop(o.hardStop?.aborted ? 2000 : 10_000).catch((err: unknown) => {
        log.warn({ err }, "stopping the engine failed");
      });
      engine.off("state", onState);
      engine.off("restart", onRestart);
      engine.off("liveness", onLiveness);
    }
    await inUse?.release().catch(() => undefined);
    await health?.close();
  }
}
