/**
 * @module `xim pull SOURCE`: fetch a model into the local cache (with
 * retries, resume, verification and atomic placement), or `--list` what
 * the cache holds. Progress is a bar on a terminal, log lines otherwise,
 * JSON lines with --json. Also `xim router models`, which publishes the
 * models a router serves to `router://NAME` pulls.
 */

import { formatBytes } from "../core/bytes-text.ts";
import { ExitCode, UsageError, XimError } from "../core/errors.ts";
import { redactUrlCredentials } from "../core/secret.ts";
import { safeText } from "../core/terminal-text.ts";
import { ModelCache } from "../models/cache.ts";
import { ModelLibrary } from "../models/library.ts";
import { barReporter, jsonLinesReporter, lineReporter, type PullEventSink } from "../models/progress.ts";
import { pullModel } from "../models/pull.ts";
import { resolveSource } from "../models/resolve-source.ts";
import { assignModel, unassignModel } from "../router/model-assignments.ts";
import { RouterStore } from "../router/store.ts";
import type { CommandSpec } from "./command.ts";
import { formatTable } from "./output.ts";
import { existingRouterStateDir, stateOption } from "./router-state.ts";

export const pullCommand: CommandSpec = {
  name: "pull",
  summary: "Fetch a model into the local cache",
  description: `Sources:
  hf://ORG/NAME[@REVISION]          a Hugging Face-style hub (HF_ENDPOINT, HF_TOKEN honoured)
  https://HOST/PATH/manifest.json   a JSON file manifest: {"name", "files": [{"path", "size", "sha256"}]}

Failed transfers are retried with exponential backoff and resume from the bytes on disk.
Each file is verified (size and sha256 or git blob id) before the model folder appears,
complete, under the cache folder. Least recently used models are evicted to stay under
the cache size limit; models in use are never evicted. The file names a source lists must be
relative paths inside the model folder (no '..', absolute or control-character names, none twice),
and a manifest or hub listing may be at most 16 MiB: anything else is refused before a byte is written.`,
  arguments: ["[source]"],
  settings: [
    "modelCacheDir",
    "modelCacheMaxSizeGb",
    "modelPullMaxAttempts",
    "modelPullBaseDelayMs",
    "modelPullMaxDelayMs",
    "logLevel",
  ],
  options: [
    { flags: "--name <name>", description: "cache the model under this name (default: the source's name)" },
    { flags: "--no-wait", description: "fail at once when another pull of the same model is running" },
    { flags: "--force", description: "download again even when the cache holds the same files" },
    { flags: "--all-files", description: "hub sources: take every file, not only one weight format" },
    { flags: "--list", description: "list the cached models, their sizes and last use" },
    { flags: "--json", description: "print JSON (progress events as JSON lines)" },
  ],
  examples: [
    "xim pull hf://Qwen/Qwen3-0.6B",
    "xim pull hf://mistralai/Mixtral-8x7B-Instruct-v0.1@main --name mixtral",
    "xim pull https://models.example.com/llama-3.1-8b/manifest.json",
    "HF_ENDPOINT=https://hub.internal xim pull hf://org/model --json",
    "xim pull --list",
  ],
  async run(ctx) {
    const { config } = ctx.config();
    const json = ctx.options.json === true;
    if (ctx.options.list) {
      const models = await new ModelCache(config).list();
      if (json) {
        ctx.io.stdout(
          `${JSON.stringify({ cacheDir: config.modelCacheDir, limitGb: config.modelCacheMaxSizeGb, models }, null, 2)}\n`,
        );
        return ExitCode.ok;
      }
      const total = models.reduce((s, m) => s + m.sizeBytes, 0);
      ctx.io.stdout(
        formatTable(
          ["NAME", "SIZE", "LAST USED", "IN USE", "SOURCE"],
          // Names and sources were written from what a model source said.
          models.map((m) => [
            safeText(m.name),
            formatBytes(m.sizeBytes),
            m.lastUsedAt,
            m.inUse ? "yes" : "no",
            m.source ? safeText(redactUrlCredentials(m.source)) : "(not placed by xim)",
          ]),
        ),
      );
      ctx.io.stdout(
        `${models.length} models, ${formatBytes(total)} of ${config.modelCacheMaxSizeGb} GB in ${config.modelCacheDir}\n`,
      );
      return ExitCode.ok;
    }
    const ref = ctx.args[0];
    if (!ref)
      throw new UsageError("xim pull needs a source", "give hf://ORG/NAME or a manifest URL, or --list");
    const source = resolveSource(ref, { env: ctx.io.env, allFiles: ctx.options.allFiles === true });
    let sink: PullEventSink;
    if (json) sink = jsonLinesReporter(ctx.io.stdout);
    else if (ctx.io.stdoutIsTty && process.stderr.isTTY) sink = barReporter(process.stderr);
    else sink = lineReporter(ctx.io.stderr);
    const result = await pullModel({
      source,
      config,
      name: typeof ctx.options.name === "string" ? ctx.options.name : undefined,
      wait: ctx.options.wait !== false,
      force: ctx.options.force === true,
      onEvent: sink,
    });
    if (json) ctx.io.stdout(`${JSON.stringify({ type: "result", ...result })}\n`);
    else ctx.io.stdout(`${result.path}\n`);
    return ExitCode.ok;
  },
};

/**
 * `xim router models add|list|remove|assign|unassign`: the models the
 * reference router publishes to its nodes (router://NAME), and which node
 * serves which. Listed by `xim router`'s subcommands; lives here beside
 * `xim pull`, its other half.
 */
export const routerModelsCommand: CommandSpec = {
  name: "models",
  summary: "Publish local model folders to enrolled nodes (router://NAME)",
  examples: [
    "xim router models add llama-3.1-8b /data/models/Meta-Llama-3.1-8B-Instruct",
    "xim router models list",
    "xim router models assign node_3f2a9c1b7d4e5f60718293a4 llama-3.1-8b",
    "xim router models remove llama-3.1-8b",
  ],
  subcommands: [
    {
      name: "add",
      summary: "Publish a model folder under NAME (every file is hashed once, now)",
      arguments: ["<name>", "<path>"],
      options: [stateOption, { flags: "--json", description: "print JSON for scripts" }],
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
    },
    {
      name: "list",
      summary: "List the published models",
      options: [stateOption, { flags: "--json", description: "print JSON for scripts" }],
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
    },
    {
      name: "remove",
      summary: "Stop publishing a model (its folder is left alone)",
      arguments: ["<name>"],
      options: [stateOption],
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
    },
    {
      name: "assign",
      summary:
        "Have a node serve a published model: the running router sends it, the node pulls it and restarts its engine with it",
      description:
        "NODE_ID is the node's id as 'xim router nodes' lists it (or an unambiguous prefix). A running 'xim router serve' picks the assignment up within about a second; a node that is offline gets it when it registers. The node pulls router://NAME into its model cache while it keeps serving, then replaces its engine. 'xim router nodes' shows the progress.",
      arguments: ["<node-id>", "<name>"],
      options: [stateOption, { flags: "--json", description: "print JSON for scripts" }],
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
    },
    {
      name: "unassign",
      summary:
        "Forget a node's assignment: a pull still running stops, the node keeps serving its current model",
      arguments: ["<node-id>"],
      options: [stateOption],
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
    },
  ],
};
