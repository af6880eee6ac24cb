/**
 * @module The conditions of `xim router nodes` as text: a short cell per node
 * for the table (severity, name, age), and the detail lines under it with
 * each condition's message and fix. Conditions come from the nodes (peer
 * text, validated printable by the wire schema) and are printed through
 * safeText all the same.
 */
import { safeText } from "../core/terminal-text.ts";
import { isoTime } from "../core/time-text.ts";
import type { NodeListing } from "../router/nodes.ts";

/** `5s`, `3m`, `2h`: how long ago a condition began (the node's clock; never negative). */
function age(sinceMs: number, now: number): string {
  const ms = Math.max(0, now - sinceMs);
  if (ms < 120_000) return `${Math.round(ms / 1000)}s`;
  if (ms < 7_200_000) return `${Math.round(ms / 60_000)}m`;
  return `${Math.round(ms / 3_600_000)}h`;
}

/** The CONDITIONS cell: `blocking gpu_lost 5s, degraded gpu_throttled 3m`, or `-`. */
export function conditionsCell(n: NodeListing, now: number): string {
  if (n.conditions.length === 0) return "-";
  return n.conditions.map((c) => `${c.severity} ${safeText(c.condition)} ${age(c.since, now)}`).join(", ");
}

/** The detail lines under the table, one block per condition of each node; empty when none. */
export function conditionDetails(nodes: readonly NodeListing[]): string {
  const lines: string[] = [];
  for (const n of nodes)
    for (const c of n.conditions) {
      lines.push(`${n.nodeId} ${safeText(c.condition)} (${c.severity}, since ${isoTime(c.since)})`);
      lines.push(`  ${safeText(c.message)}`);
      lines.push(`  fix: ${safeText(c.fix)}`);
    }
  return lines.length === 0 ? "" : `\nconditions:\n${lines.join("\n")}\n`;
}
