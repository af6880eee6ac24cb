/**
 * @module `xim router join-key create|list|revoke`: mint join keys (printed
 * once; the router keeps only their hash), list them without the keys, and
 * revoke one by its id.
 */
import { InvalidArgumentError } from "commander";
import { ExitCode, UsageError } from "../../core/errors.ts";
import { isoTime } from "../../core/time-text.ts";
import { loadIdentity } from "../../router/identity.ts";
import { createJoinKey, joinKeyStatus, parseDuration, parseLabels } from "../../router/join-keys.ts";
import { defineCommand } from "../command.ts";
import { jsonOption, textOption, valueOption } from "../options.ts";
import { formatTable } from "../output.ts";
import { stateOption, withRouterStore } from "./state.ts";

function positiveInt(name: string) {
  return (value: string) => {
    const n = Number(value);
    if (!Number.isInteger(n) || n < 1)
      throw new InvalidArgumentError(`${name} must be a whole number of at least 1, got '${value}'`);
    return n;
  };
}

/** `--labels k=v,...`, repeatable: every flag's labels, merged. */
function labels(value: string, previous: Record<string, string> | undefined): Record<string, string> {
  try {
    return parseLabels(value, previous ?? {});
  } catch (err) {
    throw new InvalidArgumentError((err as Error).message);
  }
}

const create = defineCommand({
  name: "create",
  summary: "Mint a join key (printed once; the router keeps only its hash)",
  settings: ["logLevel"],
  options: {
    state: stateOption,
    project: textOption("--project <name>", "project the enrolled nodes belong to", "default"),
    uses: valueOption(
      "--uses <n>",
      "how many nodes may enroll with the key (1 to 10000)",
      positiveInt("--uses"),
      1,
    ),
    ttl: textOption("--ttl <duration>", "lifetime, 1 minute to 365 days: 30m, 1h, 7d, or 'never'", "1h"),
    labels: valueOption("--labels <k=v,...>", "labels given to enrolled nodes (repeatable)", labels),
    url: textOption(
      "--url <url>",
      "enrollment address put in the key (default: the one 'serve' last listened on)",
    ),
    json: jsonOption,
  },
  examples: [
    "xim router join-key create",
    "xim router join-key create --project acme --uses 4 --ttl 24h --labels gpu=h100,zone=a",
  ],
  async run(ctx) {
    let ttlMs: number | null;
    try {
      ttlMs = parseDuration(ctx.options.ttl);
    } catch (err) {
      throw new UsageError(`--ttl: ${(err as Error).message}`);
    }
    const created = await withRouterStore(ctx, (store) =>
      createJoinKey(store, loadIdentity(store), {
        project: ctx.options.project,
        uses: ctx.options.uses,
        ttlMs,
        labels: ctx.options.labels ?? {},
        url: ctx.options.url,
      }),
    );
    const expires = created.row.expiresAt === null ? null : isoTime(created.row.expiresAt);
    if (ctx.options.json) {
      ctx.io.stdout(
        `${JSON.stringify({ key: created.key, id: created.row.id, project: created.row.project, uses: created.row.usesAllowed, expiresAt: expires, labels: created.row.labels, url: created.url })}\n`,
      );
    } else {
      ctx.io.stdout(`${created.key}\n`);
      ctx.io.stderr(
        `join key ${created.row.id}: project ${created.row.project}, ${created.row.usesAllowed} use(s), expires ${expires ?? "never"}, router ${created.url}\nShown once: store it now. On the node: XEROTIER_AGENT_JOIN_KEY=<key> xim run\n`,
      );
    }
    return ExitCode.ok;
  },
});

const list = defineCommand({
  name: "list",
  summary: "List join keys (ids, uses, expiry, status; never the keys)",
  settings: ["logLevel"],
  options: { state: stateOption, json: jsonOption },
  examples: ["xim router join-key list", "xim router join-key list --json"],
  async run(ctx) {
    const now = Date.now();
    const keys = await withRouterStore(ctx, (store) => store.listJoinKeys());
    const rows = keys.map((k) => ({
      id: k.id,
      project: k.project,
      status: joinKeyStatus(k, now),
      uses: k.uses,
      usesAllowed: k.usesAllowed,
      expiresAt: k.expiresAt === null ? null : isoTime(k.expiresAt),
      labels: k.labels,
      createdAt: isoTime(k.createdAt),
      revokedAt: k.revokedAt === null ? null : isoTime(k.revokedAt),
    }));
    if (ctx.options.json) ctx.io.stdout(`${JSON.stringify({ joinKeys: rows })}\n`);
    else
      ctx.io.stdout(
        formatTable(
          ["ID", "PROJECT", "STATUS", "USES", "EXPIRES", "LABELS"],
          rows.map((r) => [
            r.id,
            r.project,
            r.status,
            `${r.uses}/${r.usesAllowed}`,
            r.expiresAt ?? "never",
            Object.entries(r.labels)
              .map(([k, v]) => `${k}=${v}`)
              .join(",") || "-",
          ]),
        ),
      );
    return ExitCode.ok;
  },
});

const revoke = defineCommand({
  name: "revoke",
  summary: "Revoke a join key by its id (nodes already enrolled stay enrolled)",
  arguments: ["<id>"],
  settings: ["logLevel"],
  options: { state: stateOption, json: jsonOption },
  examples: ["xim router join-key revoke jk_3f2a9c1b7d4e"],
  async run(ctx) {
    const id = ctx.args[0];
    const revoked = await withRouterStore(ctx, (store) => store.revokeJoinKey(id, Date.now()));
    if (!revoked)
      throw new UsageError(`no join key with id '${id}'`, "List them with 'xim router join-key list'.");
    if (ctx.options.json)
      ctx.io.stdout(
        `${JSON.stringify({ id: revoked.id, revokedAt: isoTime(revoked.revokedAt ?? Date.now()) })}\n`,
      );
    else ctx.io.stdout(`revoked ${revoked.id}\n`);
    return ExitCode.ok;
  },
});

export const joinKeyCommand = defineCommand({
  name: "join-key",
  summary: "Mint, list and revoke join keys",
  examples: [
    "xim router join-key create --uses 3 --ttl 24h",
    "xim router join-key list",
    "xim router join-key revoke jk_3f2a9c1b7d4e",
  ],
  subcommands: [create, list, revoke],
});
