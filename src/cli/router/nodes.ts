/**
 * @module `xim router nodes`: the enrolled nodes, their lease state, last
 * renewal, models, capacity and model assignment; `nodes revoke` refuses a
 * node for good.
 */
import { ExitCode } from "../../core/errors.ts";
import { describeAssignment } from "../../router/model-assignments.ts";
import { listNodes, revokeNode } from "../../router/nodes.ts";
import { defineCommand } from "../command.ts";
import { conditionDetails, conditionsCell } from "../node-conditions-format.ts";
import { jsonOption } from "../options.ts";
import { formatTable } from "../output.ts";
import { stateOption, withRouterStore } from "./state.ts";

function ago(ms: number | null): string {
  if (ms === null) return "-";
  if (ms < 1000) return `${ms}ms ago`;
  if (ms < 120_000) return `${Math.round(ms / 1000)}s ago`;
  return `${Math.round(ms / 60_000)}m ago`;
}

const revoke = defineCommand({
  name: "revoke",
  summary:
    "Revoke a node for good: a running router ends its lease and its streams within about a second, and its key is refused from then on",
  description:
    "NODE_ID may be an unambiguous prefix of the id. The revoked node is told so and 'xim run' there exits with code 13; the machine serves again only after enrolling with a new join key ('xim enroll --join-key ... --force'). Revoking a revoked node changes nothing.",
  arguments: ["<node-id>"],
  settings: ["logLevel"],
  options: { state: stateOption, json: jsonOption },
  examples: [
    "xim router nodes revoke node_3f2a9c1b7d4e5f60718293a4",
    "xim router nodes revoke node_3f2a --json",
  ],
  async run(ctx) {
    const revoked = await withRouterStore(ctx, (store) => revokeNode(store, ctx.args[0]));
    if (ctx.options.json) ctx.io.stdout(`${JSON.stringify(revoked)}\n`);
    else if (revoked.alreadyRevoked)
      ctx.io.stdout(`${revoked.nodeId} was already revoked at ${revoked.revokedAt}; nothing changed\n`);
    else {
      ctx.io.stdout(`revoked ${revoked.nodeId}\n`);
      ctx.io.stderr(
        "A running router ends its lease and fails its streams within about a second; the machine serves again only after enrolling with a new join key.\n",
      );
    }
    return ExitCode.ok;
  },
});

export const nodesCommand = defineCommand({
  name: "nodes",
  summary:
    "List enrolled nodes: state, conditions, last renewal, models, capacity, assigned model and its pull",
  settings: ["logLevel"],
  options: { state: stateOption, json: jsonOption },
  examples: [
    "xim router nodes",
    "watch -n1 xim router nodes",
    "xim router nodes --json | jq '.nodes[] | select(.state==\"ready\")'",
    "xim router nodes revoke node_3f2a",
  ],
  subcommands: [revoke],
  async run(ctx) {
    const now = Date.now();
    const list = await withRouterStore(ctx, (store) => ({
      nodes: listNodes(store, now),
      counters: store.counters(),
    }));
    if (ctx.options.json) {
      ctx.io.stdout(`${JSON.stringify(list)}\n`);
      return ExitCode.ok;
    }
    ctx.io.stdout(
      formatTable(
        [
          "NODE",
          "PROJECT",
          "HOST",
          "STATE",
          "EPOCH",
          "LAST RENEWAL",
          "ENGINE",
          "MODELS",
          "CAPACITY",
          "ASSIGNED",
          "CONDITIONS",
        ],
        list.nodes.map((n) => [
          n.nodeId,
          n.project,
          n.hostname,
          n.state,
          String(n.epoch),
          ago(n.lastRenewalAgoMs),
          n.engine,
          n.models.join(",") || "-",
          `${n.freeSlots}/${n.maxConcurrent} free`,
          describeAssignment(n.assignment),
          conditionsCell(n, now),
        ]),
      ),
    );
    ctx.io.stdout(conditionDetails(list.nodes));
    const dropped = Object.entries(list.counters).filter(
      ([k, v]) => v > 0 && !["registered", "zapAdmitted"].includes(k),
    );
    if (dropped.length) ctx.io.stdout(`counters: ${dropped.map(([k, v]) => `${k}=${v}`).join(" ")}\n`);
    return ExitCode.ok;
  },
});
