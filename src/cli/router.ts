/**
 * @module `xim router`: the self-hostable reference router. `init` creates
 * its identity, `serve` runs enrollment and the control plane, `join-key`
 * mints, lists and revokes keys, `api-key` does the same for the OpenAI
 * API's keys, `nodes` lists enrolled nodes, their leases and model
 * assignments (`nodes revoke` revokes one), `models` publishes and assigns models (src/cli/pull.ts). Every subcommand finds the router by one rule (src/cli/router-state.ts).
 */
import { InvalidArgumentError } from "commander";
import { ExitCode, UsageError } from "../core/errors.ts";
import { logUnhandledRejections } from "../core/guard.ts";
import { isoTime } from "../core/time-text.ts";
import {
  createApiKey,
  listApiKeys,
  revokeApiKey,
  validateProject,
  validateTenant,
} from "../router/api-keys.ts";
import { initRouter, loadIdentity } from "../router/identity.ts";
import { createJoinKey, joinKeyStatus, parseDuration, parseLabels } from "../router/join-keys.ts";
import { describeAssignment } from "../router/model-assignments.ts";
import { listNodes, revokeNode } from "../router/nodes.ts";
import { startRouterService } from "../router/service.ts";
import { RouterStore } from "../router/store.ts";
import { INSECURE_ZMQ_WARNING } from "../transport/sockets.ts";
import type { CommandSpec, OptionSpec } from "./command.ts";
import { conditionDetails, conditionsCell } from "./node-conditions-format.ts";
import { formatTable } from "./output.ts";
import { routerModelsCommand } from "./pull.ts";
import { routerStateDir, stateOption, withRouterStore } from "./router-state.ts";

const jsonOption: OptionSpec = { flags: "--json", description: "print JSON for scripts" };

function positiveInt(name: string) {
  return (value: string) => {
    const n = Number(value);
    if (!Number.isInteger(n) || n < 1)
      throw new InvalidArgumentError(`${name} must be a whole number of at least 1, got '${value}'`);
    return n;
  };
}

function hostPort(value: string): { host: string; port: number } {
  const m = /^(?:\[([^\]]+)\]|([^:]*)):(\d+)$/.exec(value);
  if (!m) throw new Error(`'${value}' is not HOST:PORT`);
  const port = Number(m[3]);
  if (port > 65535) throw new Error(`port ${port} is out of range`);
  return { host: m[1] ?? (m[2] || "0.0.0.0"), port };
}

function nonNegativeInt(name: string) {
  return (value: string) => {
    const n = Number(value);
    if (!Number.isInteger(n) || n < 0)
      throw new InvalidArgumentError(`${name} must be a whole number of at least 0, got '${value}'`);
    return n;
  };
}

function fractionArg(name: string) {
  return (value: string) => {
    const n = Number(value);
    if (!Number.isFinite(n) || n < 0 || n > 1)
      throw new InvalidArgumentError(`${name} must be a number from 0 to 1, got '${value}'`);
    return n;
  };
}

function ago(ms: number | null): string {
  if (ms === null) return "-";
  if (ms < 1000) return `${ms}ms ago`;
  if (ms < 120_000) return `${Math.round(ms / 1000)}s ago`;
  return `${Math.round(ms / 60_000)}m ago`;
}

const init: CommandSpec = {
  name: "init",
  summary: "Create the router identity: a CURVE key pair and a self-signed TLS certificate",
  settings: ["logLevel"],
  options: [
    stateOption,
    {
      flags: "--host <name>",
      description: "extra DNS name or IP for the certificate (repeatable)",
      parse: (v, prev) => [...((prev as string[]) ?? []), v],
    },
    jsonOption,
  ],
  examples: ["xim router init", "xim router init --state /var/lib/xim-router --host router.internal"],
  async run(ctx) {
    // The one subcommand that creates a router where there is none.
    const store = await RouterStore.open(routerStateDir(ctx).dir);
    let result: Awaited<ReturnType<typeof initRouter>>;
    try {
      result = await initRouter(store, { hosts: (ctx.options.host as string[]) ?? [] });
    } finally {
      store.close();
    }
    if (ctx.options.json) ctx.io.stdout(`${JSON.stringify(result)}\n`);
    else
      ctx.io.stdout(
        `${result.created ? "created" : "already initialized; unchanged"}: ${result.stateDir}\nCURVE public key: ${result.curvePublicKey}\nTLS certificate:  ${result.tlsCertPath} (sha256 ${result.tlsPin})\n`,
      );
    return ExitCode.ok;
  },
};

const serve: CommandSpec = {
  name: "serve",
  summary: "Run the router: HTTPS enrollment, the CURVE ZeroMQ control plane and the OpenAI-compatible API",
  settings: ["logLevel", "httpHeadersTimeoutMs", "httpBodyIdleTimeoutMs", "httpMaxConnectionsPerClient"],
  options: [
    stateOption,
    {
      flags: "--enroll-listen <host:port>",
      description: "address of the HTTPS enrollment endpoint",
      default: "0.0.0.0:8443",
    },
    {
      flags: "--control-bind <endpoint>",
      description: "ZeroMQ control socket (port 0 = any)",
      default: "tcp://0.0.0.0:5555",
    },
    {
      flags: "--streaming-bind <endpoint>",
      description: "ZeroMQ streaming socket (port 0 = any)",
      default: "tcp://0.0.0.0:5556",
    },
    {
      flags: "--advertise-host <host>",
      description:
        "host name nodes use to reach this router (default: the bind host, or this machine's name)",
    },
    {
      flags: "--tls-cert <file>",
      description: "TLS certificate (PEM); default: the state folder's self-signed one",
    },
    { flags: "--tls-key <file>", description: "TLS private key (PEM)" },
    {
      flags: "--insecure-http",
      description: "serve enrollment over plain HTTP (development only: keys travel in clear)",
    },
    {
      flags: "--insecure-zmq",
      description:
        "run ZeroMQ without CURVE encryption (development and benchmarks only: requests and tokens travel in clear; nodes must set XEROTIER_AGENT_ALLOW_INSECURE=1); binds to loopback only",
    },
    {
      flags: "--insecure-zmq-allow-remote",
      description:
        "with --insecure-zmq, allow ZeroMQ binds beyond loopback (no encryption, no protection against an active attacker: trusted networks only)",
    },
    { flags: "--http-host <host>", description: "address of the OpenAI-compatible API", default: "0.0.0.0" },
    {
      flags: "--http-port <port>",
      description: "port of the OpenAI-compatible API (0 = any free port)",
      default: 8080,
      parse: nonNegativeInt("--http-port"),
    },
    {
      flags: "--metrics-port <port>",
      description: "serve Prometheus /metrics on this port (0 = any free port); off unless given",
      parse: nonNegativeInt("--metrics-port"),
    },
    { flags: "--metrics-host <host>", description: "address of the metrics server", default: "127.0.0.1" },
    {
      flags: "--queue-max <n>",
      description: "requests parked per node when the only compatible node is full",
      default: 10,
      parse: nonNegativeInt("--queue-max"),
    },
    {
      flags: "--queue-timeout-ms <ms>",
      description: "how long a parked request waits for a slot before its 503",
      default: 30000,
      parse: positiveInt("--queue-timeout-ms"),
    },
    {
      flags: "--flow-window-bytes <n>",
      description:
        "credit window asked for each stream (the node's own window caps it); 0 turns flow control off",
      default: 65536,
      parse: nonNegativeInt("--flow-window-bytes"),
    },
    {
      flags: "--flow-replenish-threshold <f>",
      description:
        "fraction of the window taken by the client that triggers credit (when the node does not say)",
      default: 0.5,
      parse: fractionArg("--flow-replenish-threshold"),
    },
    {
      flags: "--flow-max-event-bytes <n>",
      description:
        "longest unfinished SSE event held per stream; a node exceeding it loses the stream (raise it for completions with echo and logprobs over long prompts)",
      default: 1048576,
      parse: positiveInt("--flow-max-event-bytes"),
    },
    {
      flags: "--request-deadline-ms <ms>",
      description: "the node cancels a request running longer than this (0 = no deadline)",
      default: 0,
      parse: nonNegativeInt("--request-deadline-ms"),
    },
    jsonOption,
  ],
  examples: [
    "xim router serve",
    "xim router serve --http-port 8000 --metrics-port 9095",
    "xim router serve --state /var/lib/xim-router --advertise-host router.internal",
    "xim router serve --enroll-listen 127.0.0.1:0 --control-bind tcp://127.0.0.1:0 --streaming-bind tcp://127.0.0.1:0 --json",
  ],
  async run(ctx) {
    const logger = ctx.logger();
    logUnhandledRejections(logger);
    let listen: { host: string; port: number };
    try {
      listen = hostPort(String(ctx.options.enrollListen));
    } catch (err) {
      throw new UsageError(`--enroll-listen: ${(err as Error).message}`);
    }
    // serve, like init, makes a router in a folder that holds none (a first start in a container).
    const { dir: stateDir } = routerStateDir(ctx);
    const service = await startRouterService({
      stateDir,
      enrollListen: listen,
      controlBind: String(ctx.options.controlBind),
      streamingBind: String(ctx.options.streamingBind),
      advertiseHost: ctx.options.advertiseHost as string | undefined,
      plainHttp: ctx.options.insecureHttp === true,
      plainZmq: ctx.options.insecureZmq === true,
      plainZmqAllowRemote: ctx.options.insecureZmqAllowRemote === true,
      tls: { cert: ctx.options.tlsCert as string | undefined, key: ctx.options.tlsKey as string | undefined },
      logger,
      http: { host: String(ctx.options.httpHost), port: Number(ctx.options.httpPort) },
      metricsListen:
        ctx.options.metricsPort === undefined
          ? undefined
          : { host: String(ctx.options.metricsHost), port: Number(ctx.options.metricsPort) },
      queue: {
        queueMax: Number(ctx.options.queueMax),
        queueTimeoutMs: Number(ctx.options.queueTimeoutMs),
      },
      flow: {
        windowBytes: Number(ctx.options.flowWindowBytes),
        replenishThreshold: Number(ctx.options.flowReplenishThreshold),
        creditIdleMs: 100,
        maxEventBytes: Number(ctx.options.flowMaxEventBytes),
      },
      requestDeadlineMs: Number(ctx.options.requestDeadlineMs),
      httpLimits: ctx.config().config,
    });
    if (ctx.options.insecureHttp)
      logger.warn("enrollment is served over plain HTTP: join keys travel in clear; development only");
    if (ctx.options.insecureZmq) logger.warn(INSECURE_ZMQ_WARNING);
    const info = {
      ...service.endpoints,
      stateDir,
      tlsPin: service.identity.tlsPin,
      curvePublicKey: service.identity.curve.publicKey,
    };
    if (ctx.options.json) ctx.io.stdout(`${JSON.stringify(info)}\n`);
    else
      ctx.io.stdout(
        `router serving\n  enrollment: ${info.enrollUrl}\n  control:    ${info.control}\n  streaming:  ${info.streaming}\n  OpenAI API: ${info.httpUrl ?? "-"}\n${info.metricsUrl ? `  metrics:    ${info.metricsUrl}/metrics\n` : ""}  state:      ${info.stateDir}\n`,
      );
    await new Promise<void>((resolve) => {
      const stop = (signal: NodeJS.Signals) => {
        logger.info({ signal }, "stopping the router");
        process.off("SIGTERM", stop);
        process.off("SIGINT", stop);
        resolve();
      };
      process.on("SIGTERM", stop);
      process.on("SIGINT", stop);
    });
    await service.close();
    return ExitCode.ok;
  },
};

const joinKeyCreate: CommandSpec = {
  name: "create",
  summary: "Mint a join key (printed once; the router keeps only its hash)",
  settings: ["logLevel"],
  options: [
    stateOption,
    { flags: "--project <name>", description: "project the enrolled nodes belong to", default: "default" },
    {
      flags: "--uses <n>",
      description: "how many nodes may enroll with the key (1 to 10000)",
      default: 1,
      parse: positiveInt("--uses"),
    },
    {
      flags: "--ttl <duration>",
      description: "lifetime, 1 minute to 365 days: 30m, 1h, 7d, or 'never'",
      default: "1h",
    },
    {
      flags: "--labels <k=v,...>",
      description: "labels given to enrolled nodes (repeatable)",
      parse: (v, prev) => {
        try {
          return parseLabels(v, (prev as Record<string, string>) ?? {});
        } catch (err) {
          throw new InvalidArgumentError((err as Error).message);
        }
      },
    },
    {
      flags: "--url <url>",
      description: "enrollment address put in the key (default: the one 'serve' last listened on)",
    },
    jsonOption,
  ],
  examples: [
    "xim router join-key create",
    "xim router join-key create --project acme --uses 4 --ttl 24h --labels gpu=h100,zone=a",
  ],
  async run(ctx) {
    let ttlMs: number | null;
    try {
      ttlMs = parseDuration(String(ctx.options.ttl));
    } catch (err) {
      throw new UsageError(`--ttl: ${(err as Error).message}`);
    }
    const created = await withRouterStore(ctx, (store) =>
      createJoinKey(store, loadIdentity(store), {
        project: String(ctx.options.project),
        uses: ctx.options.uses as number,
        ttlMs,
        labels: (ctx.options.labels as Record<string, string>) ?? {},
        url: ctx.options.url as string | undefined,
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
};

const joinKeyList: CommandSpec = {
  name: "list",
  summary: "List join keys (ids, uses, expiry, status; never the keys)",
  settings: ["logLevel"],
  options: [stateOption, jsonOption],
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
};

const joinKeyRevoke: CommandSpec = {
  name: "revoke",
  summary: "Revoke a join key by its id (nodes already enrolled stay enrolled)",
  arguments: ["<id>"],
  settings: ["logLevel"],
  options: [stateOption, jsonOption],
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
};

const joinKey: CommandSpec = {
  name: "join-key",
  summary: "Mint, list and revoke join keys",
  examples: [
    "xim router join-key create --uses 3 --ttl 24h",
    "xim router join-key list",
    "xim router join-key revoke jk_3f2a9c1b7d4e",
  ],
  subcommands: [joinKeyCreate, joinKeyList, joinKeyRevoke],
};

const apiKeyCreate: CommandSpec = {
  name: "create",
  summary: "Mint an API key for the OpenAI API (printed once; the router keeps only its hash)",
  settings: ["logLevel"],
  options: [
    stateOption,
    {
      flags: "--project <name>",
      description: "project whose nodes serve the key's requests",
      default: "default",
    },
    { flags: "--tenant <name>", description: "tenant the requests belong to (isolates the prefix cache)" },
    jsonOption,
  ],
  examples: [
    "xim router api-key create --tenant alice",
    "xim router api-key create --project acme --tenant team-a --json",
  ],
  async run(ctx) {
    const project = String(ctx.options.project);
    const tenant = String(ctx.options.tenant ?? project);
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
};

const apiKeyList: CommandSpec = {
  name: "list",
  summary: "List API keys (ids, projects, tenants; never the keys)",
  settings: ["logLevel"],
  options: [stateOption, jsonOption],
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
};

const apiKeyRevoke: CommandSpec = {
  name: "revoke",
  summary: "Revoke an API key by its id",
  arguments: ["<id>"],
  settings: ["logLevel"],
  options: [stateOption, jsonOption],
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
};

const apiKey: CommandSpec = {
  name: "api-key",
  summary: "Mint, list and revoke API keys of the OpenAI API",
  examples: ["xim router api-key create --project acme --tenant team-a", "xim router api-key list"],
  subcommands: [apiKeyCreate, apiKeyList, apiKeyRevoke],
};

const nodesRevoke: CommandSpec = {
  name: "revoke",
  summary:
    "Revoke a node for good: a running router ends its lease and its streams within about a second, and its key is refused from then on",
  description:
    "NODE_ID may be an unambiguous prefix of the id. The revoked node is told so and 'xim run' there exits with code 13; the machine serves again only after enrolling with a new join key ('xim enroll --join-key ... --force'). Revoking a revoked node changes nothing.",
  arguments: ["<node-id>"],
  settings: ["logLevel"],
  options: [stateOption, jsonOption],
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
};

const nodes: CommandSpec = {
  name: "nodes",
  summary:
    "List enrolled nodes: state, conditions, last renewal, models, capacity, assigned model and its pull",
  settings: ["logLevel"],
  options: [stateOption, jsonOption],
  examples: [
    "xim router nodes",
    "watch -n1 xim router nodes",
    "xim router nodes --json | jq '.nodes[] | select(.state==\"ready\")'",
    "xim router nodes revoke node_3f2a",
  ],
  subcommands: [nodesRevoke],
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
};

export const routerCommand: CommandSpec = {
  name: "router",
  summary: "The self-hostable reference router",
  examples: [
    "xim router init",
    "xim router serve",
    "xim router join-key create --uses 2",
    "xim router api-key create --tenant alice",
    "xim router nodes",
  ],
  subcommands: [init, serve, joinKey, apiKey, nodes, routerModelsCommand],
};
