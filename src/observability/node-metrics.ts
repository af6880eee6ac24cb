/**
 * @module The node's Prometheus metrics: one registry per process, created
 * once and passed to the parts that count (relay, lease, engine supervisor,
 * pull). Names follow Prometheus conventions: `xim_node_` prefix, `_total`
 * for counters, base units (seconds, bytes). docs/operations.md explains
 * each one and the alert to set on it.
 */
import { Counter, collectDefaultMetrics, Gauge, Histogram, Registry } from "prom-client";
import type { NodeCondition } from "../protocol/conditions.ts";
import { ADDED_BUCKETS } from "./buckets.ts";

/** Latency buckets from 0.5 ms to ~16 s: relay overhead is sub-millisecond, engine TTFT is seconds. */
const LATENCY_BUCKETS = [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 16];

export function createNodeMetrics() {
  const registry = new Registry();
  collectDefaultMetrics({ register: registry, prefix: "xim_node_" });
  const r = [registry];
  return {
    registry,
    requests: new Counter({
      name: "xim_node_requests_total",
      help: "Inference requests handled by this node, by outcome: ok (2xx); client_error (4xx, the engine refused the request); cancelled; stalled, engine_error, rejected (5xx).",
      labelNames: ["outcome"] as const,
      registers: r,
    }),
    inFlight: new Gauge({
      name: "xim_node_streams_in_flight",
      help: "Streams being relayed now.",
      registers: r,
    }),
    bytesRelayed: new Counter({
      name: "xim_node_relayed_bytes_total",
      help: "Bytes of engine output sent to the router.",
      registers: r,
    }),
    chunksRelayed: new Counter({
      name: "xim_node_relayed_chunks_total",
      help: "SSE events sent to the router.",
      registers: r,
    }),
    ttft: new Histogram({
      name: "xim_node_time_to_first_token_seconds",
      help: "From dispatch received to the first chunk sent.",
      buckets: LATENCY_BUCKETS,
      registers: r,
    }),
    interChunk: new Histogram({
      name: "xim_node_inter_chunk_seconds",
      help: "Time between consecutive chunks of one stream.",
      buckets: LATENCY_BUCKETS,
      registers: r,
    }),
    flowPauses: new Counter({
      name: "xim_node_flow_control_pauses_total",
      help: "Times a stream waited for credit, by scope (stream window or global pause threshold).",
      labelNames: ["scope"] as const,
      registers: r,
    }),
    flowStalls: new Counter({
      name: "xim_node_flow_control_stalls_total",
      help: "Streams cancelled after FLOW_CONTROL_TIMEOUT_SECONDS without credit.",
      registers: r,
    }),
    unackedBytes: new Gauge({
      name: "xim_node_unacknowledged_bytes",
      help: "Bytes sent and not yet acknowledged by credit, over all streams (credit window occupancy).",
      registers: r,
    }),
    leaseRenewals: new Counter({
      name: "xim_node_lease_renewals_total",
      help: "Lease renewals, by result (ok, failed).",
      labelNames: ["result"] as const,
      registers: r,
    }),
    leaseHeld: new Gauge({
      name: "xim_node_lease_held",
      help: "1 while the node holds a lease.",
      registers: r,
    }),
    reconnects: new Counter({
      name: "xim_node_reconnects_total",
      help: "Reconnections to the router.",
      registers: r,
    }),
    engineState: new Gauge({
      name: "xim_node_engine_state",
      help: "1 for the engine's current state (loading, ready, failed, stopped), 0 for the others.",
      labelNames: ["state"] as const,
      registers: r,
    }),
    engineRestarts: new Counter({
      name: "xim_node_engine_restarts_total",
      help: "Engine restarts after a crash, by classified cause.",
      labelNames: ["cause"] as const,
      registers: r,
    }),
    modelPulls: new Counter({
      name: "xim_node_model_pulls_total",
      help: "Model pulls, by result (ok, failed).",
      labelNames: ["result"] as const,
      registers: r,
    }),
    modelPullBytes: new Counter({
      name: "xim_node_model_pull_bytes_total",
      help: "Bytes downloaded by model pulls.",
      registers: r,
    }),
    conditions: new Gauge({
      name: "xim_node_condition",
      help: "1 for each condition the node has now, by name and severity (docs/operations.md, Node conditions); a cleared condition's series goes away.",
      labelNames: ["condition", "severity"] as const,
      registers: r,
    }),
    framesDropped: new Counter({
      name: "xim_node_frames_dropped_total",
      help: "Malformed, unknown or oversized frames received and dropped, by reason.",
      labelNames: ["reason"] as const,
      registers: r,
    }),
    // The time the node adds (sent to the router in stream_start's addedUs for its Server-Timing).
    added: new Histogram({
      name: "xim_node_added_seconds",
      help: "The node's own time per request before its stream_start: from the dispatch to the engine request, and from the engine's first answer to stream_start. The engine and the network are not in it.",
      buckets: ADDED_BUCKETS,
      registers: r,
    }),
  };
}

export type NodeMetrics = ReturnType<typeof createNodeMetrics>;

const ENGINE_STATES = ["loading", "ready", "failed", "stopped"] as const;

/** Set the one-hot engine state gauge. */
export function setEngineState(metrics: NodeMetrics, state: string): void {
  for (const s of ENGINE_STATES) metrics.engineState.set({ state: s }, s === state ? 1 : 0);
}

/**
 * One series per condition held now. A cleared condition's series is
 * removed rather than set to 0: `xim_node_condition` then lists exactly the
 * problems of now (`count by (condition) (xim_node_condition)` counts the
 * nodes that have each), a severity change leaves no stale series behind,
 * and Prometheus's staleness handling ends the alert.
 */
export function setConditions(metrics: NodeMetrics, conditions: readonly NodeCondition[]): void {
  metrics.conditions.reset();
  for (const c of conditions) metrics.conditions.set({ condition: c.condition, severity: c.severity }, 1);
}
