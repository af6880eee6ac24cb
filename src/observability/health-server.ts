/**
 * @module The node's observability endpoint: GET /metrics (Prometheus text),
 * /healthz (the process is alive: always 200 while it runs) and /readyz
 * (200 only when the engine is ready, the lease is held and no blocking
 * condition holds; the body names each reason and lists the conditions). They are kept
 * apart so that losing the router makes the node unready, never "unhealthy":
 * a supervisor that restarts unhealthy containers must not kill a healthy
 * engine that took 20 minutes to load.
 */
import type { AddressInfo } from "node:net";
import type { Registry } from "prom-client";
import { createGuardedServer, DEFAULT_HTTP_LIMITS, type HttpLimits } from "../core/http-server.ts";
import { type Logger, silentLogger } from "../core/log.ts";
import type { NodeCondition } from "../protocol/conditions.ts";

export interface Readiness {
  ready: boolean;
  /** Why not ready, for a person reading the response. */
  reasons: string[];
  /** The node's lifecycle state (src/agent/node-state.ts), when the node says it. */
  state?: string;
  /** The node's conditions now (a blocking one makes it not ready); shown in the body when given. */
  conditions?: NodeCondition[];
}

export interface HealthServer {
  port: number;
  close: () => Promise<void>;
}

export async function startHealthServer(opts: {
  host: string;
  port: number;
  registry: Registry;
  readiness: () => Readiness;
  /** Where a failed request is logged; nowhere when absent. */
  logger?: Logger;
  /** Slow-client and per-client connection limits; the documented defaults when absent. */
  limits?: HttpLimits;
}): Promise<HealthServer> {
  const server = createGuardedServer({
    what: "metrics",
    logger: (opts.logger ?? silentLogger()).child({ component: "metrics-server" }),
    limits: opts.limits ?? DEFAULT_HTTP_LIMITS,
    answer: (res, status, _code, message) =>
      res.writeHead(status, { "content-type": "text/plain" }).end(`${message}\n`),
    handle: async (req, res) => {
      const path = (req.url ?? "/").split("?")[0];
      req.resume();
      if (req.method !== "GET" && req.method !== "HEAD") {
        res.writeHead(405, { allow: "GET, HEAD" }).end();
      } else if (path === "/healthz") {
        res.writeHead(200, { "content-type": "text/plain" }).end("ok\n");
      } else if (path === "/readyz") {
        const r = opts.readiness();
        res
          .writeHead(r.ready ? 200 : 503, { "content-type": "application/json" })
          .end(
            `${JSON.stringify({ ready: r.ready, reasons: r.reasons, ...(r.state ? { state: r.state } : {}), conditions: r.conditions })}\n`,
          );
      } else if (path === "/metrics") {
        const body = await opts.registry.metrics();
        res.writeHead(200, { "content-type": opts.registry.contentType }).end(body);
      } else {
        res
          .writeHead(404, { "content-type": "text/plain" })
          .end("not found: try /metrics, /healthz or /readyz\n");
      }
    },
  });
  await new Promise<void>((resolve, reject) => {
    server.once("error", reject);
    server.listen(opts.port, opts.host, () => resolve());
  });
  return {
    port: (server.address() as AddressInfo).port,
    close: () =>
      new Promise((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
}
