/**
 * @module The router's Prometheus metrics (`xim_router_` prefix). Created
 * once per router process and passed to the HTTP front, dispatcher, queue
 * and lease tracker.
 */
import { Counter, collectDefaultMetrics, Gauge, Histogram, Registry } from "prom-client";
import { ADDED_BUCKETS } from "./buckets.ts";

const LATENCY_BUCKETS = [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 16];

/** One condition a node reports: the labels of `xim_router_node_conditions`. */
export interface ConditionLabels {
  node: string;
  condition: string;
  severity: string;
}

export function createRouterMetrics() {
  const registry = new Registry();
  // Read at each scrape: the control plane's live view, so a cleared condition leaves no stale series.
  let conditionSource: () => Iterable<ConditionLabels> = () => [];
  collectDefaultMetrics({ register: registry, prefix: "xim_router_" });
  const r = [registry];
  return {
    registry,
    requests: new Counter({
      name: "xim_router_requests_total",
      help: "HTTP inference requests, by outcome: ok (2xx); client_error (4xx, the router's or the engine's refusal); cancelled (the client went away); no_node, queue_full, queue_timeout, node_error (5xx).",
      labelNames: ["outcome"] as const,
      registers: r,
    }),
    inFlight: new Gauge({
      name: "xim_router_streams_in_flight",
      help: "Streams open to clients now.",
      registers: r,
    }),
    bytesRelayed: new Counter({
      name: "xim_router_relayed_bytes_total",
      help: "Bytes sent to clients.",
      registers: r,
    }),
    chunksRelayed: new Counter({
      name: "xim_router_relayed_chunks_total",
      help: "Chunks sent to clients.",
      registers: r,
    }),
    ttft: new Histogram({
      name: "xim_router_time_to_first_token_seconds",
      help: "From the HTTP request to its first chunk written to the client (includes queueing).",
      buckets: LATENCY_BUCKETS,
      registers: r,
    }),
    queueDepth: new Gauge({
      name: "xim_router_queue_depth",
      help: "Requests parked waiting for a node slot.",
      registers: r,
    }),
    queueTimeouts: new Counter({
      name: "xim_router_queue_timeouts_total",
      help: "Queued requests answered 503 after the queue timeout.",
      registers: r,
    }),
    creditsGranted: new Counter({
      name: "xim_router_credit_bytes_granted_total",
      help: "Credit bytes replenished to nodes.",
      registers: r,
    }),
    leaseRenewals: new Counter({
      name: "xim_router_lease_renewals_total",
      help: "Lease renewals received.",
      registers: r,
    }),
    leaseExpiries: new Counter({
      name: "xim_router_lease_expiries_total",
      help: "Leases expired because renewals stopped.",
      registers: r,
    }),
    nodes: new Gauge({
      name: "xim_router_nodes",
      help: "Nodes by state (registered, ready, draining, expired).",
      labelNames: ["state"] as const,
      registers: r,
    }),
    nodeConditions: new Gauge({
      name: "xim_router_node_conditions",
      help: "Conditions live nodes report now (1 each), by node, condition and severity (info, degraded, blocking); a blocking one stops dispatch to the node.",
      labelNames: ["node", "condition", "severity"] as const,
      registers: r,
      collect() {
        this.reset();
        for (const labels of conditionSource()) this.set({ ...labels }, 1);
      },
    }),
    requestsHeld: new Counter({
      name: "xim_router_requests_held_total",
      help: "Requests held for a node that may come back because no node could take them, by reason: blocked (a blocking condition), offline (lease expired or given back), not_ready (engine not ready, or draining).",
      labelNames: ["reason"] as const,
      registers: r,
    }),
    handshakesRefused: new Counter({
      name: "xim_router_curve_handshakes_refused_total",
      help: "CURVE handshakes refused by the ZAP allow-list (unknown node keys).",
      registers: r,
    }),
    framesDropped: new Counter({
      name: "xim_router_frames_dropped_total",
      help: "Malformed, unknown or oversized frames received and dropped, by reason.",
      labelNames: ["reason"] as const,
      registers: r,
    }),
    /** Where `xim_router_node_conditions` reads the conditions from (the router service sets it). */
    readConditionsFrom(source: () => Iterable<ConditionLabels>): void {
      conditionSource = source;
    },
    // The time the router adds (router/server-timing.ts; the same figures as its Server-Timing header).
    added: new Histogram({
      name: "xim_router_added_seconds",
      help: "The router's own time per request answered by a node: arrival to dispatch, less the queue wait and the body's upload, plus the node's stream_start to the response headers. Network hops, the node and the engine are not in it.",
      buckets: ADDED_BUCKETS,
      registers: r,
    }),
    queueWait: new Histogram({
      name: "xim_router_queue_wait_seconds",
      help: "Time a request waited for a node slot (0 when one was free at once), by every request that asked for one.",
      buckets: LATENCY_BUCKETS,
      registers: r,
    }),
  };
}

export type RouterMetrics = ReturnType<typeof createRouterMetrics>;
