/**
 * @module `xim pull SOURCE`: fetch a model into the local cache (with
 * retries, resume, verification and atomic placement), or `--list` what
 * the cache holds. Progress is a bar on a terminal, log lines otherwise,
 * JSON lines with --json. Its other half, `xim router models`, publishes the
 * models a router serves to `router://NAME` pulls (src/cli/router/models.ts).
 */

import { formatBytes } from "../core/bytes-text.ts";
import { ExitCode, UsageError } from "../core/errors.ts";
import { redactUrlCredentials } from "../core/secret.ts";
import { safeText } from "../core/terminal-text.ts";
import { ModelCache } from "../models/cache.ts";
import { barReporter, jsonLinesReporter, lineReporter, type PullEventSink } from "../models/progress.ts";
import { pullModel } from "../models/pull.ts";
import { resolveSource } from "../models/resolve-source.ts";
import { defineCommand } from "./command.ts";
import { negatedSwitch, switchOption, textOption } from "./options.ts";
import { formatTable } from "./output.ts";

export const pullCommand = defineCommand({
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
  options: {
    name: textOption("--name <name>", "cache the model under this name (default: the source's name)"),
    wait: negatedSwitch("--no-wait", "fail at once when another pull of the same model is running"),
    force: switchOption("--force", "download again even when the cache holds the same files"),
    allFiles: switchOption("--all-files", "hub sources: take every file, not only one weight format"),
    list: switchOption("--list", "list the cached models, their sizes and last use"),
    json: switchOption("--json", "print JSON (progress events as JSON lines)"),
  },
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
      name: ctx.options.name,
      wait: ctx.options.wait !== false,
      force: ctx.options.force === true,
      onEvent: sink,
    });
    if (json) ctx.io.stdout(`${JSON.stringify({ type: "result", ...result })}\n`);
    else ctx.io.stdout(`${result.path}\n`);
    return ExitCode.ok;
  },
});
