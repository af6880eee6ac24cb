/**
 * @module `xim router models add|list|remove|assign|unassign`: the models
 * the reference router publishes to its nodes (router://NAME), and which
 * node serves which. `xim pull` (src/cli/pull.ts) is its other half.
 */
import { formatBytes } from "../../core/bytes-text.ts";
import { ExitCode, XimError } from "../../core/errors.ts";
import { ModelLibrary } from "../../models/library.ts";
import { assignModel, unassignModel } from "../../router/model-assignments.ts";
import { RouterStore } from "../../router/store.ts";
import { defineCommand } from "../command.ts";
import { jsonOption } from "../options.ts";
import { formatTable } from "../output.ts";
import { existingRouterStateDir, stateOption } from "./state.ts";

const add = defineCommand({
  name: "add",
  summary: "Publish a model folder under NAME (every file is hashed once, now)",
  arguments: ["<name>", "<path>"],
  options: { state: stateOption, json: jsonOption },
  examples: ["xim router models add mixtral /data/models/Mixtral-8x7B-Instruct-v0.1"],
  async run(ctx) {
    const [name, path] = ctx.args;
    const published = await new ModelLibrary(existingRouterStateDir(ctx)).add(name, path);
    const bytes = published.manifest.files.reduce((s, f) => s + f.size, 0);
    if (ctx.options.json)
      ctx.io.stdout(`${JSON.stringify({ name, dir: published.dir, manifest: published.manifest })}\n`);
    else
      ctx.io.stdout(
        `published ${name}: ${published.manifest.files.length} files, ${formatBytes(bytes)} from ${published.dir}\n`,
      );
    return ExitCode.ok;
  },
});

const list = defineCommand({
  name: "list",
  summary: "List the published models",
  options: { state: stateOption, json: jsonOption },
  examples: ["xim router models list --json"],
  async run(ctx) {
    const models = await new ModelLibrary(existingRouterStateDir(ctx)).list();
    if (ctx.options.json) ctx.io.stdout(`${JSON.stringify({ models }, null, 2)}\n`);
    else
      ctx.io.stdout(
        formatTable(
          ["NAME", "FILES", "SIZE", "ADDED", "FOLDER"],
          models.map((m) => [m.name, String(m.files), formatBytes(m.bytes), m.addedAt, m.dir]),
        ),
      );
    return ExitCode.ok;
  },
});

const remove = defineCommand({
  name: "remove",
  summary: "Stop publishing a model (its folder is left alone)",
  arguments: ["<name>"],
  options: { state: stateOption },
  examples: ["xim router models remove mixtral"],
  async run(ctx) {
    const removed = await new ModelLibrary(existingRouterStateDir(ctx)).remove(ctx.args[0]);
    if (!removed)
      throw new XimError("XIM_MODEL_NOT_FOUND", `the router publishes no model named ${ctx.args[0]}`, {
        hint: "xim router models list",
      });
    ctx.io.stdout(`no longer publishing ${ctx.args[0]}\n`);
    return ExitCode.ok;
  },
});

const assign = defineCommand({
  name: "assign",
  summary:
    "Have a node serve a published model: the running router sends it, the node pulls it and restarts its engine with it",
  description:
    "NODE_ID is the node's id as 'xim router nodes' lists it (or an unambiguous prefix). A running 'xim router serve' picks the assignment up within about a second; a node that is offline gets it when it registers. The node pulls router://NAME into its model cache while it keeps serving, then replaces its engine. 'xim router nodes' shows the progress.",
  arguments: ["<node-id>", "<name>"],
  options: { state: stateOption, json: jsonOption },
  examples: [
    "xim router models assign node_3f2a9c1b7d4e5f60718293a4 mixtral",
    "xim router models assign node_3f2a mixtral   # a unique prefix of the id",
  ],
  async run(ctx) {
    const [nodeId, name] = ctx.args;
    const state = existingRouterStateDir(ctx);
    const store = await RouterStore.open(state);
    try {
      const a = await assignModel(store, new ModelLibrary(state), nodeId, name);
      if (ctx.options.json)
        ctx.io.stdout(
          `${JSON.stringify({ nodeId: a.nodeId, name: a.name, assignmentId: a.assignmentId, assignedAt: new Date(a.assignedAt).toISOString() })}\n`,
        );
      else
        ctx.io.stdout(
          `assigned router://${a.name} to ${a.nodeId} (${a.assignmentId}); follow it with 'xim router nodes'\n`,
        );
      return ExitCode.ok;
    } finally {
      store.close();
    }
  },
});

const unassign = defineCommand({
  name: "unassign",
  summary: "Forget a node's assignment: a pull still running stops, the node keeps serving its current model",
  arguments: ["<node-id>"],
  options: { state: stateOption },
  examples: ["xim router models unassign node_3f2a9c1b7d4e5f60718293a4"],
  async run(ctx) {
    const store = await RouterStore.open(existingRouterStateDir(ctx));
    try {
      const r = unassignModel(store, ctx.args[0]);
      ctx.io.stdout(r.had ? `${r.nodeId} has no assignment now\n` : `${r.nodeId} had no assignment\n`);
      return ExitCode.ok;
    } finally {
      store.close();
    }
  },
});

export const modelsCommand = defineCommand({
  name: "models",
  summary: "Publish local model folders to enrolled nodes (router://NAME)",
  examples: [
    "xim router models add llama-3.1-8b /data/models/Meta-Llama-3.1-8B-Instruct",
    "xim router models list",
    "xim router models assign node_3f2a9c1b7d4e5f60718293a4 llama-3.1-8b",
    "xim router models remove llama-3.1-8b",
  ],
  subcommands: [add, list, remove, assign, unassign],
});
