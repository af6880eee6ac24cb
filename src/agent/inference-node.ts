/**
 * @module `xim run` as a library: the engine, the relay, the metrics
 * server and the session with the router, wired together. The engine
 * starts at once, in parallel with the first registration, and never
 * restarts because the router went away; its state (loading, ready,
 * failed with the cause) and the free slots reach the router as soon as
 * they change. The first SIGTERM (`signal`) drains: the router is told at
 * once, in-flight streams get DRAIN_GRACE_SECONDS, then the engine stops
 * and the call returns. A second one (`hardStop`) cancels the streams
 * and stops at once.
 */
import type { Config } from "../core/config/schema.ts";
import type { Logger } from "../core/log.ts";
import { DEFAULT_SALT_SECRET_WARNING, isDefaultSaltSecret } from "../engine/cache-salt.ts";
import type { Engine, EngineStatus } from "../engine/engine.ts";
import { type HealthServer, startHealthServer } from "../observability/health-server.ts";
import { createNodeMetrics, type NodeMetrics, setEngineState } from "../observability/node-metrics.ts";
import { TotalsDelta } from "../observability/totals.ts";
import type { Hardware } from "../protocol/messages.ts";
import { createLaunchEngine, type Launch } from "./engine-setup.ts";
import { deriveMaxConcurrent, Relay } from "./relay.ts";
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
  /** An engine made by the caller (tests: an in-process SimulatedEngine) instead of the launch's. */
  engine?: Engine;
  hardware?: Hardware;
  metrics?: NodeMetrics;
  /** Called once the relay exists (tests read its stream stats). */
  onRelay?: (relay: Relay) => void;
  /** Called once the metrics server listens. */
  onMetrics?: (server: HealthServer) => void;
}

export async function runInferenceNode(
  o: InferenceNodeOptions,
): Promise<{ nodeId: string; enrolled: boolean }> {
  const { config, logger } = o;
  const log = logger.child({ component: "node" });
  if (isDefaultSaltSecret(config)) log.warn(DEFAULT_SALT_SECRET_WARNING);
  const metrics = o.metrics ?? createNodeMetrics();
  let engine = o.engine;
  let planned: number | null | undefined;
  if (!engine && o.launch) {
    const launched = await createLaunchEngine(o.launch, config, { logger, env: o.env });
    engine = launched.engine;
    planned = launched.currentPlan()?.maxConcurrent;
  }
  let session: NodeSession | undefined;
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
    engine ? "starting the engine and the relay" : "no model to serve yet: registering without an engine",
  );

  const onState = (s: EngineStatus) => {
    setEngineState(metrics, s.state);
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
  };
  engine?.on("state", onState);
  engine?.on("restart", (r) => {
    metrics.engineRestarts.inc({ cause: r.failure.cause });
    void session?.reportStatus({
      reason: r.failure.cause,
      message: `engine exited (${r.failure.summary}); restart ${r.restarts} in ${r.delayMs} ms`,
      exitCode: r.failure.exitCode,
      logTail: r.failure.lastLines.slice(-200).map((l) => l.slice(0, 4096)),
    });
  });
  if (engine) setEngineState(metrics, engine.state);
  // The engine loads while the node registers: a big model takes minutes either way.
  engine?.start().catch((err: unknown) => log.error({ err }, "the engine could not be started"));

  let health: HealthServer | undefined;
  if (!config.disableMetricsServer) {
    try {
      health = await startHealthServer({
        host: config.metricsHost,
        port: config.metricsPort,
        registry: metrics.registry,
        readiness: () => {
          const reasons: string[] = [];
          if (!engine) reasons.push("no engine: no model assigned yet");
          else if (engine.state !== "ready") reasons.push(`engine ${engine.state}`);
          if (!session?.lease) reasons.push("no lease with the router");
          return { ready: reasons.length === 0, reasons };
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
  const dropped = ["malformed", "oversized", "unknownType", "invalid", "versionMismatch"] as const;
  const totals = new TotalsDelta();
  const leaseGauge = setInterval(() => {
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
  }, 1000);
  try {
    return await runNode({
      config,
      logger,
      signal: o.signal,
      hardware: o.hardware,
      status: () => relay.status(),
      onMessage: (m) => relay.handle(m),
      onSession: (s) => {
        session = s;
      },
      beforeStop: async (_s, graceMs) => {
        await relay.drain(graceMs, o.hardStop);
      },
    });
  } finally {
    clearInterval(leaseGauge);
    relay.cancelAll();
    if (engine) {
      log.info("stopping the engine");
      await engine.stop(o.hardStop?.aborted ? 2000 : 10_000).catch((err: unknown) => {
        log.warn({ err }, "stopping the engine failed");
      });
      engine.off("state", onState);
    }
    await health?.close();
  }
}
