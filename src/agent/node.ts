/**
 * @module `xim run` as a library: the inference node. `run()` reads top to
 * bottom: prepare the engine slot and the relay, open the metrics server,
 * enroll, open the session (register, lease loop), start the engine on the
 * first registration (the Xerotier documentation: "immediately after
 * registration"), serve until the first signal, drain, stop. A node that
 * cannot enroll or reach its router never loads a model onto the GPU; it
 * never restarts the engine because the router went away. The node's
 * state (node-state.ts) follows the lease and the engine, is logged at each
 * transition, sent to the router at once (node_status) and shown on
 * /readyz. Where each part lives: engine-slot.ts (the engine and model
 * swaps), model-assignment.ts (pulls), session.ts (the router connection),
 * drain.ts (the order of a stop), relay.ts (streams).
 */
import type { Config } from "../core/config/schema.ts";
import { guarded } from "../core/guard.ts";
import type { Logger } from "../core/log.ts";
import { DEFAULT_SALT_SECRET_WARNING, isDefaultSaltSecret } from "../engine/cache-salt.ts";
import type { Engine } from "../engine/engine.ts";
import { type HealthServer, startHealthServer } from "../observability/health-server.ts";
import { createNodeMetrics, type NodeMetrics } from "../observability/node-metrics.ts";
import { TotalsDelta } from "../observability/totals.ts";
import { deriveMaxConcurrent } from "../planner/max-concurrent.ts";
import type { Hardware } from "../protocol/messages.ts";
import { NodeConditions } from "./conditions/node-conditions.ts";
import { drainNode, serveUntilStopped } from "./drain.ts";
import { createLaunchEngine, describeAssignedLaunch, type Launch } from "./engine-setup.ts";
import { EngineSlot, type SlotEngine } from "./engine-slot.ts";
import { ModelAssignments } from "./model-assignment.ts";
import { ensureEnrolled } from "./node-enrollment.ts";
import { NodeStateMachine } from "./node-state.ts";
import { Relay } from "./relay.ts";
import { NodeSession } from "./session.ts";

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
  /** The node's own checks (default: the doctor's watched checks and the engine's conditions, conditions/node-conditions.ts). */
  conditions?: NodeConditions;
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

/** Frame drop counters of the session, as the node's metrics name them. */
const DROPPED = ["malformed", "oversized", "unknownType", "invalid", "versionMismatch"] as const;

export class InferenceNode {
  readonly state: NodeStateMachine;
  readonly #o: InferenceNodeOptions;
  readonly #log: Logger;
  readonly #metrics: NodeMetrics;
  readonly #conditions: NodeConditions;
  #session: NodeSession | undefined;
  #relay!: Relay;
  #slot!: EngineSlot;
  #assignments: ModelAssignments | undefined;
  #health: HealthServer | undefined;
  #leaseGauge: NodeJS.Timeout | undefined;
  readonly #totals = new TotalsDelta();

  constructor(o: InferenceNodeOptions) {
    this.#o = o;
    this.#log = o.logger.child({ component: "node" });
    this.#metrics = o.metrics ?? createNodeMetrics();
    this.state = new NodeStateMachine(o.logger);
    this.#conditions =
      o.conditions ??
      new NodeConditions({
        config: o.config,
        env: o.env,
        logger: o.logger,
        metrics: this.#metrics,
        // A raised or cleared condition reaches the router at once, not at the next renewal.
        onChange: () => void this.#session?.reportStatus(),
        engineUrl: () => (this.#slot?.ready ? this.#slot.engine?.baseUrl : undefined),
      });
    // Every transition reaches the router at once (the node_status carries the state).
    this.state.onChange(() => void this.#session?.reportStatus());
  }

  /** enroll -> session (register, lease loop; the engine starts once registered) -> serve -> drain -> stop. */
  async run(): Promise<{ nodeId: string; enrolled: boolean }> {
    const { config, logger } = this.#o;
    if (isDefaultSaltSecret(config)) this.#log.warn(DEFAULT_SALT_SECRET_WARNING);
    await this.#prepareEngine();
    await this.#startMetricsServer();
    try {
      const { state, enrolled } = await ensureEnrolled(config, logger);
      // The start-up checks, before registering: their conditions go with the registration.
      await this.#conditions.start();
      this.state.to("registering", "enrolled");
      const session = this.#openSession(state);
      const remember = { configDir: config.configDir, nodeId: state.nodeId, logger };
      await serveUntilStopped(session, this.#o.signal, remember);
      this.state.to("draining", "stop signal");
      await drainNode({
        session,
        nodeId: state.nodeId,
        graceMs: config.drainGraceSeconds * 1000,
        logger,
        finishStreams: (graceMs) => this.#relay.drain(graceMs, this.#o.hardStop),
      });
      return { nodeId: state.nodeId, enrolled };
    } finally {
      await this.#stop();
    }
  }

  /** The engine slot (the initial engine is built, not started) and the relay that serves from it. */
  async #prepareEngine(): Promise<void> {
    const { config, logger, env, launch } = this.#o;
    let initial: SlotEngine | undefined = this.#o.engine ? { engine: this.#o.engine } : undefined;
    let planned: number | null | undefined;
    if (!initial && launch) {
      const launched = await createLaunchEngine(launch, config, {
        logger,
        env,
        gpuProbe: this.#conditions.gpuProbe,
      });
      initial = { engine: launched.engine, fallbackAt: launched.fallbackAt };
      planned = launched.currentPlan()?.maxConcurrent;
    }
    this.#relay = new Relay({
      engine: () => this.#slot.engine,
      send: (m) => this.#session?.send(m) ?? Promise.resolve(false),
      flow: config,
      maxConcurrent: deriveMaxConcurrent(config, planned, launch?.hardware?.gpus),
      saltSecret: config.vllmSaltSecret,
      logger,
      metrics: this.#metrics,
      onSlotsChange: () => void this.#session?.reportStatus(),
    });
    this.#slot = new EngineSlot(
      {
        config,
        logger,
        env,
        metrics: this.#metrics,
        launchFor: this.#o.launchFor ?? ((model) => describeAssignedLaunch(config, new Set(), env, model)),
        report: (detail) => void this.#session?.reportStatus(detail),
        onChange: () => this.#followFacts("engine changed"),
        settleStreams: (graceMs, stopNow) => this.#relay.settle(graceMs, stopNow),
        hardStop: this.#o.hardStop,
        conditions: this.#conditions,
      },
      initial,
    );
    this.#o.onRelay?.(this.#relay);
    const engine = this.#slot.engine;
    this.#log.info(
      {
        engine: engine?.kind ?? "none",
        model: engine?.servedModelName,
        maxConcurrent: this.#relay.maxConcurrent,
        flowControl: config.flowControlEnabled,
        windowBytes: config.flowControlWindowBytes,
      },
      engine
        ? "registering with the router; the engine starts once registered"
        : "no model to serve yet: registering without an engine",
    );
  }

  /** The session with the router, and the model assignments that ride it. */
  #openSession(state: ConstructorParameters<typeof NodeSession>[0]["state"]): NodeSession {
    const { config, logger } = this.#o;
    const session: NodeSession = new NodeSession({
      state,
      settings: config,
      logger,
      status: () => this.#slot.status(this.#relay.status()),
      conditions: () => this.#conditions.current(),
      nodeState: () => this.state.state,
      hardware: this.#o.hardware,
      windowBytes: config.flowControlEnabled ? config.flowControlWindowBytes : 0,
      onMessage: (m) => {
        if (m.type === "model_assign") this.#assignments?.handle(m);
        else if (m.type === "model_unassign") this.#assignments?.withdraw(m.assignmentId);
        else this.#relay.handle(m);
        if (m.type === "drain_request") this.state.to("draining", `the router asked: ${m.reason}`);
      },
      onRegistered: (lease) => {
        this.#relay.leaseBegan(lease.leaseId);
        this.#slot.startInitial();
        this.#assignments?.resend();
      },
      onLeaseChange: (lease) => this.#followFacts(lease ? "registered" : "no lease"),
      onRouterClock: this.#conditions.routerClock,
      onLost: (why) => this.#relay.leaseLost(why),
    });
    this.#session = session;
    this.#assignments = new ModelAssignments({
      config,
      logger,
      channel: session.modelChannel(),
      report: (p) => session.reportModelProgress(p),
      serve: (model) => this.#slot.serve(model),
      metrics: this.#metrics,
    });
    this.#o.onAssignments?.(this.#assignments);
    this.#leaseGauge = setInterval(
      guarded(this.#log, "the lease metrics", () => this.#countLease(session)),
      1000,
    );
    return session;
  }

  #followFacts(reason: string): void {
    // A node with no engine at all (no model yet) has nothing loading: it is ready for an assignment
    // (/readyz still says it cannot serve inference, and why).
    const engineReady = this.#slot.ready || this.#slot.engine === undefined;
    this.state.follow({ leaseHeld: Boolean(this.#session?.lease), engineReady }, reason);
  }

  /** The session counts; the metrics take the increments (a registration after the first is a reconnect). */
  #countLease(session: NodeSession): void {
    const m = this.#metrics;
    m.leaseHeld.set(session.lease ? 1 : 0);
    const stats = session.leaseStats;
    m.leaseRenewals.inc({ result: "ok" }, this.#totals.delta("renewalsAcked", stats.renewalsAcked));
    m.reconnects.inc(this.#totals.delta("reconnects", Math.max(0, stats.registrations - 1)));
    for (const reason of DROPPED) {
      m.framesDropped.inc({ reason }, this.#totals.delta(reason, session.counters[reason] ?? 0));
    }
  }

  async #startMetricsServer(): Promise<void> {
    const { config } = this.#o;
    if (config.disableMetricsServer) return;
    try {
      this.#health = await startHealthServer({
        host: config.metricsHost,
        port: config.metricsPort,
        registry: this.#metrics.registry,
        logger: this.#log,
        limits: config,
        readiness: () => {
          const reasons = this.#slot.notReadyReasons();
          if (!this.#session?.lease) reasons.push("no lease with the router");
          reasons.push(...this.#conditions.notReadyReasons());
          const conditions = this.#conditions.current();
          return { ready: reasons.length === 0, reasons, state: this.state.state, conditions };
        },
      });
      this.#log.info({ host: config.metricsHost, port: this.#health.port }, "metrics server listening");
      this.#o.onMetrics?.(this.#health);
    } catch (err) {
      // The metrics server is an aid, not the node's job: serve inference without it.
      this.#log.error(
        {
          err,
          hint: "Set XEROTIER_AGENT_METRICS_PORT to a free port, or XEROTIER_AGENT_DISABLE_METRICS_SERVER=1.",
        },
        `the metrics server could not listen on ${config.metricsHost}:${config.metricsPort}; running without /metrics, /healthz and /readyz`,
      );
    }
  }

  /** Whatever happened before: stop pulls, streams and the engine, close the metrics server. */
  async #stop(): Promise<void> {
    clearInterval(this.#leaseGauge);
    await this.#conditions.stop();
    await this.#assignments?.close();
    this.#relay.cancelAll();
    await this.#slot.stop();
    this.state.to("stopped", "the node stopped");
    await this.#health?.close();
  }
}

/** `xim run`'s node: InferenceNode.run() (kept as a function for the callers that hold no node). */
export function runInferenceNode(o: InferenceNodeOptions): Promise<{ nodeId: string; enrolled: boolean }> {
  return new InferenceNode(o).run();
}
