/**
 * @module `xim router api-key create|list|revoke`: the keys clients of the
 * OpenAI-compatible API send (printed once; the router keeps only their
 * hash), each bound to a project and a tenant.
 */
import { ExitCode, UsageError } from "../../core/errors.ts";
import { isoTime } from "../../core/time-text.ts";
import {
  createApiKey,
  listApiKeys,
  revokeApiKey,
  validateProject,
  validateTenant,
} from "../../router/api-keys.ts";
import { defineCommand } from "../command.ts";
import { jsonOption, textOption } from "../options.ts";
import { formatTable } from "../output.ts";
import { stateOption, withRouterStore } from "./state.ts";

const create = defineCommand({
  name: "create",
  summary: "Mint an API key for the OpenAI API (printed once; the router keeps only its hash)",
  settings: ["logLevel"],
  options: {
    state: stateOption,
    project: textOption("--project <name>", "project whose nodes serve the key's requests", "default"),
    tenant: textOption("--tenant <name>", "tenant the requests belong to (isolates the prefix cache)"),
    json: jsonOption,
  },
  examples: [
    "xim router api-key create --tenant alice",
    "xim router api-key create --project acme --tenant team-a --json",
  ],
  async run(ctx) {
    const project = ctx.options.project;
    const tenant = ctx.options.tenant ?? project;
    const bad = validateProject(project) ?? validateTenant(tenant);
    if (bad) throw new UsageError(bad);
    const created = await withRouterStore(ctx, (store) => createApiKey(store, { project, tenant }));
    if (ctx.options.json)
      ctx.io.stdout(
        `${JSON.stringify({ key: created.key, id: created.row.id, project, tenant, createdAt: new Date(created.row.createdAt).toISOString() })}\n`,
      );
    else {
      ctx.io.stdout(`${created.key}\n`);
      ctx.io.stderr(
        `API key ${created.row.id}: project ${project}, tenant ${tenant}\nShown once: store it now. Clients send it as 'Authorization: Bearer <key>'.\n`,
      );
    }
    return ExitCode.ok;
  },
});

const list = defineCommand({
  name: "list",
  summary: "List API keys (ids, projects, tenants; never the keys)",
  settings: ["logLevel"],
  options: { state: stateOption, json: jsonOption },
  examples: ["xim router api-key list"],
  async run(ctx) {
    const rows = (await withRouterStore(ctx, (store) => listApiKeys(store))).map((k) => ({
      id: k.id,
      project: k.project,
      tenant: k.tenant,
      createdAt: isoTime(k.createdAt),
      revokedAt: k.revokedAt === null ? null : isoTime(k.revokedAt),
    }));
    if (ctx.options.json) ctx.io.stdout(`${JSON.stringify({ apiKeys: rows })}\n`);
    else
      ctx.io.stdout(
        formatTable(
          ["ID", "PROJECT", "TENANT", "CREATED", "STATUS"],
          rows.map((r) => [r.id, r.project, r.tenant, r.createdAt, r.revokedAt ? "revoked" : "active"]),
        ),
      );
    return ExitCode.ok;
  },
});

const revoke = defineCommand({
  name: "revoke",
  summary: "Revoke an API key by its id",
  arguments: ["<id>"],
  settings: ["logLevel"],
  options: { state: stateOption, json: jsonOption },
  examples: ["xim router api-key revoke ak_3f2a9c1b7d4e"],
  async run(ctx) {
    const id = ctx.args[0];
    const revoked = await withRouterStore(ctx, (store) => revokeApiKey(store, id));
    if (!revoked)
      throw new UsageError(`no API key with id '${id}'`, "List them with 'xim router api-key list'.");
    if (ctx.options.json) ctx.io.stdout(`${JSON.stringify({ id: revoked.id, revoked: true })}\n`);
    else ctx.io.stdout(`revoked ${revoked.id}\n`);
    return ExitCode.ok;
  },
});

export const apiKeyCommand = defineCommand({
  name: "api-key",
  summary: "Mint, list and revoke API keys of the OpenAI API",
  examples: ["xim router api-key create --project acme --tenant team-a", "xim router api-key list"],
  subcommands: [create, list, revoke],
});
