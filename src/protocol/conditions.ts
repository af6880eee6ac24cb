/**
 * @module What a node tells the router about its own health while it runs:
 * its lifecycle state and its conditions (problems a check found, such as a
 * GPU that stopped answering or an engine that keeps crashing). Both ride
 * every registration, lease renewal and `node_status` (sent at once on a
 * change). A condition's name is open (a newer node may report one this
 * router does not know, and the router shows it as sent); its severity is
 * not, because the router acts on it: `blocking` stops dispatch to the node.
 */
import * as v from "valibot";
import { isTerminalSafe } from "../core/terminal-text.ts";

/** How bad a condition is: `info` is shown only, `degraded` is shown and serving goes on, `blocking` stops dispatch. */
export const CONDITION_SEVERITIES = ["info", "degraded", "blocking"] as const;
export type ConditionSeverity = (typeof CONDITION_SEVERITIES)[number];

/** The conditions this version of xim raises (docs/operations.md says what raises and clears each). */
export const KNOWN_CONDITIONS = [
  "gpu_lost",
  "gpu_memory_errors",
  "gpu_throttled",
  "engine_crash_loop",
  "engine_unresponsive",
  "kv_cache_exhausted",
  "model_cache_disk_low",
  "lmcache_degraded",
  "socket_buffers_capped",
  "clock_skew",
] as const;

/** At most this many conditions per message; a node never has more distinct ones. */
export const MAX_CONDITIONS = 32;

const printable = (max: number) =>
  v.pipe(
    v.string(),
    v.maxLength(max),
    v.check(isTerminalSafe, "has control characters; only printable text is accepted"),
  );

export const NodeConditionSchema = v.object({
  /** snake_case name, e.g. `gpu_lost`. */
  condition: v.pipe(
    v.string(),
    v.regex(/^[a-z][a-z0-9_]{0,63}$/, "must be snake_case, at most 64 characters"),
  ),
  severity: v.picklist(CONDITION_SEVERITIES),
  /** When the node first saw it, epoch ms (the node's clock). */
  since: v.pipe(v.number(), v.integer(), v.minValue(0), v.maxValue(8.64e15)),
  /** What is wrong, for an operator. */
  message: printable(1024),
  /** What to do about it. */
  fix: printable(1024),
});
export type NodeCondition = v.InferOutput<typeof NodeConditionSchema>;

export const NodeConditionsSchema = v.pipe(v.array(NodeConditionSchema), v.maxLength(MAX_CONDITIONS));

/** The node's lifecycle, in order; `enrolling` and `stopped` are never seen by a router but are logged and on /readyz. */
export const NODE_STATES = ["enrolling", "registering", "loading", "ready", "draining", "stopped"] as const;
export type NodeState = (typeof NODE_STATES)[number];

/** Whether any condition stops dispatch to the node. */
export function blockingConditions(conditions: readonly NodeCondition[]): NodeCondition[] {
  return conditions.filter((c) => c.severity === "blocking");
}
