/**
 * An inference stack in this process, all real parts: the router service
 * (HTTPS enrollment, CURVE ZeroMQ control plane, OpenAI HTTP front on an
 * OS port), and nodes that enroll with a join key and run the relay
 * against an in-process simulated engine (a real HTTP server on
 * loopback). Tests drive it over HTTP like any client.
 */
import { mkdtempSync, rmSync } from "node:fs";
import http from "node:http";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { runInferenceNode } from "../../src/agent/node.ts";
import type { Relay } from "../../src/agent/relay.ts";
import { loadConfig } from "../../src/core/config/load.ts";
import { type Logger, silentLogger } from "../../src/core/log.ts";
import type { Engine } from "../../src/engine/engine.ts";
import type { SimulatedEngineOptions } from "../../src/engine/simulated.ts";
import { SimulatedEngine } from "../../src/engine/simulated-engine.ts";
import type { HealthServer } from "../../src/observability/health-server.ts";
import type { NodeMetrics } from "../../src/observability/node-metrics.ts";
import { createApiKey } from "../../src/router/api-keys.ts";
import type { FlowSettingsRouter } from "../../src/router/dispatch.ts";
import { createJoinKey } from "../../src/router/join-keys.ts";
import type { QueueSettings } from "../../src/router/queue.ts";
import { type RouterService, startRouterService } from "../../src/router/service.ts";
import { waitFor } from "../router/harness.ts";

export interface StackNode {
  nodeId: string;
  configDir: string;
  engine: SimulatedEngine;
  /** The engine the node runs (the simulated one unless the test gave its own). */
  nodeEngine: Engine;
  relay: Relay;
  /** First SIGTERM: drain. */
  stop: () => void;
  /** Second SIGTERM: stop now. */
  hardStop: () => void;
  done: Promise<unknown>;
}

export class Stack {
  readonly dir = mkdtempSync(join(tmpdir(), "xim-relay-"));
  service!: RouterService;
  readonly nodes: StackNode[] = [];
  /** The router's and the nodes' logger: silent unless the test gives one to read. */
  logger: Logger = silentLogger();

  static async start(
    o: {
      queue?: QueueSettings;
      flow?: FlowSettingsRouter;
      plainZmq?: boolean;
      logger?: Logger;
      /** Serve the router's /metrics (on an OS port: service.endpoints.metricsUrl). */
      metrics?: boolean;
    } = {},
  ): Promise<Stack> {
    const s = new Stack();
    if (o.logger) s.logger = o.logger;
    s.service = await startRouterService({
      stateDir: join(s.dir, "router"),
      enrollListen: { host: "127.0.0.1", port: 0 },
      controlBind: "tcp://127.0.0.1:0",
      streamingBind: "tcp://127.0.0.1:0",
      http: { host: "127.0.0.1", port: 0 },
      queue: o.queue,
      flow: o.flow,
      plainZmq: o.plainZmq,
      metricsListen: o.metrics ? { host: "127.0.0.1", port: 0 } : undefined,
      logger: s.logger,
    });
    return s;
  }

  get url(): string {
    return this.service.endpoints.httpUrl as string;
  }

  apiKey(project: string, tenant: string): string {
    return createApiKey(this.service.store, { project, tenant }).key;
  }

  /** Enroll and run a node of `project` with a simulated engine; resolves once the router may dispatch to it. */
  async addNode(o: {
    project?: string;
    sim?: Partial<SimulatedEngineOptions>;
    env?: Record<string, string>;
    /** Run as another process of an enrolled node (its state folder), as after a restart. */
    sameIdentityAs?: StackNode;
    /** Another engine than the in-process simulated one (then the node is awaited registered, not ready). */
    engine?: Engine;
    /** The node's metrics, for tests that read them. */
    metrics?: NodeMetrics;
    /** Called once the node's metrics server listens (with env XEROTIER_AGENT_DISABLE_METRICS_SERVER=0). */
    onMetrics?: (server: HealthServer) => void;
  }): Promise<StackNode> {
    const project = o.project ?? "default";
    const { key } = createJoinKey(this.service.store, this.service.identity, {
      project,
      uses: 1,
      ttlMs: null,
      labels: {},
    });
    const configDir = o.sameIdentityAs?.configDir ?? join(this.dir, `node-${this.nodes.length}`);
    const { config } = loadConfig({
      env: {
        XEROTIER_AGENT_CONFIG_DIR: configDir,
        XEROTIER_AGENT_JOIN_KEY: key,
        XEROTIER_AGENT_LEASE_RENEWAL_INTERVAL_MS: "200",
        XEROTIER_AGENT_LEASE_DURATION_MS: "3000",
        XEROTIER_AGENT_DISABLE_METRICS_SERVER: "1",
        XEROTIER_AGENT_ENGINE: "sim",
        XEROTIER_AGENT_VLLM_SALT_SECRET: "test-secret-for-relay-tests",
        ...o.env,
      },
      cwd: this.dir,
    });
    const engine = new SimulatedEngine({ model: "sim-model", loadTimeMs: 0, ttftMs: 0, itlMs: 0, ...o.sim });
    const stop = new AbortController();
    const hard = new AbortController();
    let relay: Relay | undefined;
    const done = runInferenceNode({
      config,
      logger: this.logger,
      launch: undefined,
      engine: o.engine ?? engine,
      signal: stop.signal,
      hardStop: hard.signal,
      env: {},
      metrics: o.metrics,
      onMetrics: o.onMetrics,
      onRelay: (r) => {
        relay = r;
      },
    }).catch((err: unknown) => err);
    const before = new Set(this.nodes.map((n) => n.nodeId));
    const epoch = o.sameIdentityAs
      ? (this.service.controlPlane.lease(o.sameIdentityAs.nodeId)?.epoch ?? 0)
      : 0;
    const lease = await waitFor(
      () =>
        this.service.controlPlane
          .leases()
          .filter((l) => l.state !== "expired" && l.controlRoutingId !== null)
          .find((l) =>
            o.sameIdentityAs
              ? l.nodeId === o.sameIdentityAs.nodeId && l.epoch > epoch
              : !before.has(l.nodeId) &&
                l.project === project &&
                (o.engine !== undefined || l.status.engine === "ready"),
          ),
      { timeoutMs: 20_000, what: "the node to be ready at the router" },
    );
    const node: StackNode = {
      nodeId: lease.nodeId,
      configDir,
      engine,
      nodeEngine: o.engine ?? engine,
      relay: relay as Relay,
      stop: () => stop.abort(),
      hardStop: () => hard.abort(),
      done,
    };
    this.nodes.push(node);
    return node;
  }

  async close(): Promise<void> {
    for (const n of this.nodes) {
      n.stop();
      n.hardStop();
    }
    await Promise.allSettled(this.nodes.map((n) => n.done));
    await this.service?.close();
    rmSync(this.dir, { recursive: true, force: true });
  }
}

export function chatBody(extra: Record<string, unknown> = {}): Record<string, unknown> {
  return { model: "sim-model", messages: [{ role: "user", content: "tell me about rivers" }], ...extra };
}

export interface RawResponse {
  status: number;
  headers: http.IncomingHttpHeaders;
  body: Buffer;
}

/** POST JSON and read the whole answer as bytes. */
export async function post(
  url: string,
  path: string,
  body: unknown,
  headers: Record<string, string> = {},
): Promise<RawResponse> {
  const res = await fetch(`${url}${path}`, {
    method: "POST",
    headers: { "content-type": "application/json", ...headers },
    body: typeof body === "string" ? body : JSON.stringify(body),
    signal: AbortSignal.timeout(30_000),
  });
  return {
    status: res.status,
    headers: Object.fromEntries(res.headers) as http.IncomingHttpHeaders,
    body: Buffer.from(await res.arrayBuffer()),
  };
}

/** A streaming request whose reader the test controls: paused until resume(). */
export function slowRequest(url: string, path: string, body: unknown, headers: Record<string, string>) {
  const u = new URL(url);
  let res: http.IncomingMessage | undefined;
  const parts: Buffer[] = [];
  const req = http.request({
    host: u.hostname,
    port: u.port,
    path,
    method: "POST",
    headers: { "content-type": "application/json", ...headers },
  });
  const started = new Promise<http.IncomingMessage>((resolve, reject) => {
    req.once("response", (r) => {
      res = r;
      r.pause();
      r.on("data", (d: Buffer) => parts.push(d));
      resolve(r);
    });
    req.once("error", reject);
  });
  req.end(JSON.stringify(body));
  const ended = started.then(
    (r) =>
      new Promise<Buffer>((resolve, reject) => {
        r.once("end", () => resolve(Buffer.concat(parts)));
        r.once("error", reject);
      }),
  );
  // A test that destroys the request need not await the end.
  ended.catch(() => undefined);
  return {
    started,
    ended,
    resume: () => res?.resume(),
    destroy: () => req.destroy(),
  };
}
