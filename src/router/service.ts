/**
 * @module `xim router serve` as a library: opens the state, loads (or
 * creates) the identity, starts the ZeroMQ control plane and the HTTPS
 * enrollment endpoint, and records the advertised addresses so
 * `join-key create` can put them in keys. The inference path (issue 4)
 * takes `controlPlane` from here to dispatch requests and read streams.
 */
import { hostname } from "node:os";
import { CleanupStack } from "../core/cleanup-stack.ts";
import { guarded } from "../core/guard.ts";
import type { HttpLimits } from "../core/http-server.ts";
import type { Logger } from "../core/log.ts";
import { ModelLibrary } from "../models/library.ts";
import { startHealthServer } from "../observability/health-server.ts";
import { createRouterMetrics, type RouterMetrics } from "../observability/router-metrics.ts";
import { TotalsDelta } from "../observability/totals.ts";
import { ControlPlane, FRAME_DROP_COUNTERS } from "./control-plane.ts";
import { DEFAULT_ROUTER_FLOW, type FlowSettingsRouter, RouterRelay } from "./dispatch.ts";
import { startEnrollServer } from "./enroll-server.ts";
import { initRouter, loadIdentity, type RouterIdentity, type TlsFiles } from "./identity.ts";
import { checkInsecureBinds } from "./insecure-zmq.ts";
import { ENROLL_URL_META } from "./join-keys.ts";
import { ModelAssigner } from "./model-assignments.ts";
import { ModelServer } from "./model-serving.ts";
import { isOffline } from "./node-availability.ts";
import { type OpenAiServer, startOpenAiServer } from "./openai-http.ts";
import { DEFAULT_QUEUE, type QueueSettings, Scheduler } from "./queue.ts";
import { RouterStore } from "./store.ts";

export interface RouterServiceOptions {
  stateDir: string;
  /** host:port of the enrollment endpoint. */
  enrollListen: { host: string; port: number };
  /** ZeroMQ bind addresses, e.g. tcp://0.0.0.0:5555 (port * or 0 = any free port). */
  controlBind: string;
  streamingBind: string;
  /** Host name or address that nodes use to reach this router; defaults to the bind host, or the machine's name for 0.0.0.0. */
  advertiseHost?: string;
  plainHttp?: boolean;
  /** ZeroMQ without CURVE (development and benchmarks only; nodes must allow insecure). */
  plainZmq?: boolean;
  /** With plainZmq: bind beyond loopback too (`--insecure-zmq-allow-remote`; see insecure-zmq.ts). */
  plainZmqAllowRemote?: boolean;
  tls?: TlsFiles;
  /** Lease settings announced at enrollment (the node's own settings decide). */
  lease?: { durationMs: number; renewalIntervalMs: number };
  logger: Logger;
  expiryCheckMs?: number;
  /** The OpenAI-compatible front (POST /v1/chat/completions ...); off when absent. */
  http?: { host: string; port: number };
  /** Prometheus /metrics (and /healthz, /readyz) of the router; off when absent. */
  metricsListen?: { host: string; port: number };
  queue?: QueueSettings;
  flow?: FlowSettingsRouter;
  /** Sent with each dispatch: the node cancels a request that runs longer (0 = no deadline). */
  requestDeadlineMs?: number;
  /** How often model assignments written by `xim router models assign` are looked for. */
  assignmentPollMs?: number;
  /** Slow-client and per-client connection limits of the enrollment, API and metrics ports. */
  httpLimits?: HttpLimits;
}

export interface RouterEndpoints {
  enrollUrl: string;
  control: string;
  streaming: string;
  /** The OpenAI front, when served. */
  httpUrl?: string;
  /** The metrics server, when served. */
  metricsUrl?: string;
}

export interface RouterService {
  store: RouterStore;
  identity: RouterIdentity;
  controlPlane: ControlPlane;
  endpoints: RouterEndpoints;
  metrics: RouterMetrics;
  scheduler: Scheduler;
  relay: RouterRelay;
  /** Delivers model assignments to nodes and records their pull progress. */
  assigner: ModelAssigner;
  /** Serves the assigned model's files to nodes (model_request). */
  models: ModelServer;
  close: () => Promise<void>;
}

function wildcard(host: string): boolean {
  return host === "0.0.0.0" || host === "::" || host === "*" || host === "";
}

function bracket(host: string): string {
  return host.includes(":") && !host.startsWith("[") ? `[${host}]` : host;
}

/** tcp://0.0.0.0:40123 as bound -> tcp://<advertised>:40123 for nodes. */
function advertise(endpoint: string, host: string): string {
  const m = /^tcp:\/\/(\[[^\]]*\]|[^:]*):(\d+)$/.exec(endpoint);
  if (!m) return endpoint;
  const bound = m[1].replace(/^\[|\]$/g, "");
  return `tcp://${bracket(wildcard(bound) ? host : bound)}:${m[2]}`;
}

/** ZeroMQ wants `*` for "any port"; accept 0 as people write for other servers. */
function zmqBind(bind: string): string {
  return bind.replace(/:0$/, ":*");
}

/** Create the router's identity on first start (logged once: the public key and TLS pin are what operators check). */
async function ensureIdentity(store: RouterStore, o: RouterServiceOptions): Promise<RouterIdentity> {
  if (!store.getMeta("curve_public_key")) {
    const init = await initRouter(store);
    o.logger.info(
      { stateDir: o.stateDir, curvePublicKey: init.curvePublicKey, tlsPin: init.tlsPin },
      "router identity created",
    );
  }
  return loadIdentity(store, o.tls);
}

/**
 * Keep the router's node and counter metrics current: node counts on every
 * lease change, the control plane's own counters once a second. Returns the
 * function that stops the second.
 */
function syncRouterMetrics(cp: ControlPlane, metrics: RouterMetrics, logger: Logger): () => void {
  const countNodes = () => {
    const by: Record<string, number> = { registered: 0, ready: 0, draining: 0, expired: 0 };
    for (const l of cp.leases()) by[l.state] = (by[l.state] ?? 0) + 1;
    for (const [state, n] of Object.entries(by)) metrics.nodes.set({ state }, n);
  };
  metrics.readConditionsFrom(function* () {
    for (const l of cp.leases())
      if (!isOffline(l))
        for (const c of l.conditions) yield { node: l.nodeId, condition: c.condition, severity: c.severity };
  });
  // Expiries are counted from the control plane's own counter below (a node's release is not one).
  cp.onLeaseChange(() => countNodes());
  countNodes();
  const totals = new TotalsDelta();
  const sync = () => {
    const delta = (name: keyof typeof cp.counters) => totals.delta(name, cp.counters[name]);
    metrics.handshakesRefused.inc(delta("zapRefused"));
    metrics.leaseRenewals.inc(delta("renewed"));
    metrics.leaseExpiries.inc(delta("expired"));
    for (const reason of FRAME_DROP_COUNTERS) metrics.framesDropped.inc({ reason }, delta(reason));
  };
  const timer = setInterval(guarded(logger, "the router's metrics sync", sync), 1000);
  return () => clearInterval(timer);
}

/** What the inference path is made of: node choice and queue, the relay, and the HTTP front when served. */
interface InferencePath {
  scheduler: Scheduler;
  relay: RouterRelay;
  front: OpenAiServer | undefined;
}

/**
 * Start the inference path and register its shutdown as one step: parked
 * and in-flight requests are answered 503 (router_stopping) before the
 * front's connections are dropped, which the reverse of the start order
 * would not do.
 */
async function startInferencePath(
  o: RouterServiceOptions,
  parts: { store: RouterStore; controlPlane: ControlPlane; metrics: RouterMetrics; cleanup: CleanupStack },
): Promise<InferencePath> {
  const { store, controlPlane, metrics } = parts;
  const scheduler = new Scheduler(controlPlane, o.queue ?? DEFAULT_QUEUE, metrics);
  const relay = new RouterRelay({
    controlPlane,
    scheduler,
    flow: o.flow ?? DEFAULT_ROUTER_FLOW,
    metrics,
    logger: o.logger,
    deadlineMs: o.requestDeadlineMs,
  });
  let front: OpenAiServer | undefined;
  parts.cleanup.defer(async () => {
    scheduler.close();
    relay.close();
    await front?.close();
  });
  if (o.http) {
    front = await startOpenAiServer({
      host: o.http.host,
      port: o.http.port,
      store,
      controlPlane,
      relay,
      logger: o.logger,
      metrics,
      limits: o.httpLimits,
    });
  }
  return { scheduler, relay, front };
}

/** The router's /metrics, /healthz and /readyz, when asked for; its URL as a node or operator reaches it. */
async function startMetricsServer(
  o: RouterServiceOptions,
  metrics: RouterMetrics,
  cleanup: CleanupStack,
): Promise<string | undefined> {
  if (!o.metricsListen) return undefined;
  const server = await startHealthServer({
    host: o.metricsListen.host,
    port: o.metricsListen.port,
    registry: metrics.registry,
    readiness: () => ({ ready: true, reasons: [] }),
    logger: o.logger,
    limits: o.httpLimits,
  });
  cleanup.defer(() => server.close());
  const host = o.metricsListen.host === "0.0.0.0" ? "127.0.0.1" : o.metricsListen.host;
  return `http://${bracket(host)}:${server.port}`;
}

/** Published models (`xim router models add`) served to nodes; assignments (`models assign`) sent to them. */
function startModelDelivery(
  o: RouterServiceOptions,
  parts: { store: RouterStore; controlPlane: ControlPlane; cleanup: CleanupStack },
): { models: ModelServer; assigner: ModelAssigner } {
  const { store, controlPlane, cleanup } = parts;
  const library = new ModelLibrary(o.stateDir);
  const models = new ModelServer({ library, store, controlPlane, logger: o.logger });
  cleanup.defer(() => models.close());
  // Progress of each assignment's pull is recorded as nodes report it.
  const assigner = new ModelAssigner({ store, controlPlane, logger: o.logger, pollMs: o.assignmentPollMs });
  cleanup.defer(() => assigner.close());
  return { models, assigner };
}

/** The HTTPS (or, for development, HTTP) enrollment endpoint; returns its URL as nodes reach it. */
async function startEnrollment(
  o: RouterServiceOptions,
  parts: {
    store: RouterStore;
    identity: RouterIdentity;
    host: string;
    endpoints: { control: string; streaming: string };
    cleanup: CleanupStack;
  },
): Promise<string> {
  const enroll = await startEnrollServer({
    store: parts.store,
    identity: parts.identity,
    listen: o.enrollListen,
    plainHttp: o.plainHttp === true,
    curve: o.plainZmq !== true,
    endpoints: () => parts.endpoints,
    lease: o.lease ?? { durationMs: 30_000, renewalIntervalMs: 10_000 },
    logger: o.logger,
    limits: o.httpLimits,
  });
  parts.cleanup.defer(() => enroll.close());
  return `${o.plainHttp ? "http" : "https"}://${bracket(parts.host)}:${enroll.port}`;
}

/**
 * Start the router in the order its parts depend on one another. Each part
 * registers its cleanup as soon as it runs, so a failed start and `close()`
 * undo the same list, newest first.
 */
export async function startRouterService(o: RouterServiceOptions): Promise<RouterService> {
  if (o.plainZmq)
    checkInsecureBinds(
      { "--control-bind": o.controlBind, "--streaming-bind": o.streamingBind },
      o.plainZmqAllowRemote === true,
    );
  const store = await RouterStore.open(o.stateDir);
  const cleanup = new CleanupStack();
  cleanup.defer(() => store.close());
  try {
    const identity = await ensureIdentity(store, o);
    const host = o.advertiseHost ?? (wildcard(o.enrollListen.host) ? hostname() : o.enrollListen.host);
    const controlPlane = await ControlPlane.start({
      store,
      keys: identity.curve,
      controlBind: zmqBind(o.controlBind),
      streamingBind: zmqBind(o.streamingBind),
      logger: o.logger,
      expiryCheckMs: o.expiryCheckMs,
      curve: o.plainZmq !== true,
      flowWindowBytes: (o.flow ?? DEFAULT_ROUTER_FLOW).windowBytes,
    });
    cleanup.defer(() => controlPlane.close());
    const { models, assigner } = startModelDelivery(o, { store, controlPlane, cleanup });
    const endpoints = {
      control: advertise(controlPlane.controlEndpoint, host),
      streaming: advertise(controlPlane.streamingEndpoint, host),
    };
    const enrollUrl = await startEnrollment(o, { store, identity, host, endpoints, cleanup });
    const metrics = createRouterMetrics();
    cleanup.defer(syncRouterMetrics(controlPlane, metrics, o.logger));
    const { scheduler, relay, front } = await startInferencePath(o, {
      store,
      controlPlane,
      metrics,
      cleanup,
    });
    const metricsUrl = await startMetricsServer(o, metrics, cleanup);
    store.setMeta(ENROLL_URL_META, enrollUrl);
    store.setMeta("control_endpoint", endpoints.control);
    store.setMeta("streaming_endpoint", endpoints.streaming);
    return {
      store,
      identity,
      controlPlane,
      endpoints: {
        enrollUrl,
        ...endpoints,
        ...(front ? { httpUrl: front.url } : {}),
        ...(metricsUrl ? { metricsUrl } : {}),
      },
      metrics,
      scheduler,
      relay,
      assigner,
      models,
      close: () => cleanup.close(),
    };
  } catch (err) {
    // The start failed: undo what did start; the start's own error is the one to report.
    await cleanup.close().catch((closeErr: unknown) => {
      o.logger.warn({ err: closeErr }, "cleaning up after a failed router start also failed");
    });
    throw err;
  }
}
