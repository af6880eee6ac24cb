/**
 * @module The router's enrollment endpoint, `POST /v1/enroll` over HTTPS
 * (plain HTTP only when the operator asks for it): trades a join key and a
 * node's CURVE public key for a node id and the router's endpoints. Bodies
 * are validated with the shared schemas; every refusal has its own code
 * (docs/protocol.md "Enrollment").
 */
import { randomBytes } from "node:crypto";
import type * as http from "node:http";
import type { AddressInfo } from "node:net";
import * as v from "valibot";
import { canAnswer, createGuardedServer, DEFAULT_HTTP_LIMITS, type HttpLimits } from "../core/http-server.ts";
import type { Logger } from "../core/log.ts";
import { joinKeySecretHash, parseJoinKey } from "../protocol/join-key.ts";
import {
  type EnrollErrorBody,
  type EnrollErrorCode,
  EnrollRequestSchema,
  type EnrollResponse,
  JoinKeyCheckRequestSchema,
  type JoinKeyCheckResponse,
} from "../protocol/messages.ts";
import { PROTOCOL_VERSION, upgradeSide, versionMismatchMessage } from "../protocol/version.ts";
import { z85Decode } from "../transport/curve.ts";
import type { RouterIdentity } from "./identity.ts";
import type { RouterStore } from "./store.ts";

/** Enrollment bodies above this are refused (a real one is under 1 KiB). */
export const MAX_BODY_BYTES = 64 * 1024;

const STATUS: Record<EnrollErrorCode, number> = {
  malformed_request: 400,
  malformed_key: 400,
  unknown_key: 401,
  revoked_key: 403,
  used_key: 409,
  node_key_in_use: 409,
  expired_key: 410,
  version_mismatch: 426,
  internal: 500,
};

export interface EnrollServerOptions {
  store: RouterStore;
  identity: RouterIdentity;
  /** host:port to listen on (port 0 = any free port). */
  listen: { host: string; port: number };
  /** Serve plain HTTP (development only). */
  plainHttp: boolean;
  endpoints: () => { control: string; streaming: string };
  lease: { durationMs: number; renewalIntervalMs: number };
  logger: Logger;
  now?: () => number;
  /** false when the control plane runs without CURVE (--insecure-zmq); told to nodes at enrollment. */
  curve?: boolean;
  /** Slow-client and per-client connection limits; the documented defaults when absent. */
  limits?: HttpLimits;
}

export interface EnrollServer {
  url: string;
  port: number;
  close: () => Promise<void>;
}

class Refusal extends Error {
  readonly code: EnrollErrorCode;
  readonly upgrade: "node" | "router" | null;
  constructor(code: EnrollErrorCode, message: string, upgrade: "node" | "router" | null = null) {
    super(message);
    this.code = code;
    this.upgrade = upgrade;
  }
}

async function readBody(req: http.IncomingMessage): Promise<string> {
  let size = 0;
  const parts: Buffer[] = [];
  for await (const chunk of req) {
    size += (chunk as Buffer).length;
    if (size > MAX_BODY_BYTES)
      throw new Refusal("malformed_request", `request body larger than ${MAX_BODY_BYTES} bytes`);
    parts.push(chunk as Buffer);
  }
  return Buffer.concat(parts).toString("utf8");
}

/** A request body as its schema says, or a `malformed_request` refusal naming the field. */
function parseBody<S extends v.GenericSchema>(bodyText: string, schema: S): v.InferOutput<S> {
  let body: unknown;
  try {
    body = JSON.parse(bodyText);
  } catch {
    throw new Refusal("malformed_request", "the body is not JSON");
  }
  const parsed = v.safeParse(schema, body);
  if (!parsed.success) {
    const issue = parsed.issues[0];
    throw new Refusal(
      "malformed_request",
      `${issue.path?.map((p) => String(p.key)).join(".") ?? "body"}: ${issue.message}`,
    );
  }
  return parsed.output;
}

/**
 * `POST /v1/enroll/check`: would this join key enroll a node now? The same
 * checks as an enrollment, spending nothing and recording nothing; `xim
 * doctor` asks it so an expired or used-up key is found before `xim run`.
 * It tells nothing to a caller without the key (the key's secret is the
 * lookup).
 */
function handleCheck(bodyText: string, o: EnrollServerOptions): JoinKeyCheckResponse {
  const key = parseJoinKey(parseBody(bodyText, JoinKeyCheckRequestSchema).joinKey);
  if (!key.ok) throw new Refusal("malformed_key", `join key ${key.part}: ${key.message}`);
  if (key.key.curvePin !== o.identity.curvePin)
    throw new Refusal(
      "malformed_key",
      "join key CURVE pin is not this router's: the key was edited, or minted by another router",
    );
  const checked = o.store.checkJoinKey({
    hash: joinKeySecretHash(key.key.secret),
    project: key.key.project,
    now: o.now?.() ?? Date.now(),
  });
  if (!checked.ok) throw new Refusal(checked.code, checked.message);
  return {
    ok: true,
    project: checked.key.project,
    usesLeft: checked.key.usesAllowed - checked.key.uses,
    expiresAt: checked.key.expiresAt === null ? null : new Date(checked.key.expiresAt).toISOString(),
  };
}

function handleEnroll(bodyText: string, o: EnrollServerOptions): EnrollResponse {
  const req = parseBody(bodyText, EnrollRequestSchema);
  if (req.protocolVersion !== PROTOCOL_VERSION) {
    throw new Refusal(
      "version_mismatch",
      versionMismatchMessage(req.protocolVersion, PROTOCOL_VERSION),
      upgradeSide(req.protocolVersion, PROTOCOL_VERSION),
    );
  }
  const key = parseJoinKey(req.joinKey);
  if (!key.ok) throw new Refusal("malformed_key", `join key ${key.part}: ${key.message}`);
  if (z85Decode(req.nodePublicKey)?.length !== 32)
    throw new Refusal("malformed_request", "nodePublicKey is not a Z85 CURVE key");
  if (key.key.curvePin !== o.identity.curvePin)
    // The node would refuse our answer after we spent a use: refuse first.
    throw new Refusal(
      "malformed_key",
      "join key CURVE pin is not this router's: the key was edited, or minted by another router",
    );
  const nodeId = `node_${randomBytes(12).toString("hex")}`;
  const outcome = o.store.enrollNode({
    hash: joinKeySecretHash(key.key.secret),
    project: key.key.project,
    nodeId,
    publicKey: req.nodePublicKey,
    hostname: req.hostname,
    agentVersion: req.agentVersion,
    now: o.now?.() ?? Date.now(),
  });
  if (!outcome.ok) throw new Refusal(outcome.code, outcome.message);
  const endpoints = o.endpoints();
  o.logger.info(
    {
      nodeId: outcome.node.nodeId,
      project: outcome.key.project,
      joinKeyId: outcome.key.id,
      hostname: req.hostname,
    },
    outcome.retried ? "node enrolled again with the same key (a retry; no use spent)" : "node enrolled",
  );
  return {
    protocolVersion: PROTOCOL_VERSION,
    nodeId: outcome.node.nodeId,
    project: outcome.key.project,
    routerPublicKey: o.identity.curve.publicKey,
    controlEndpoint: endpoints.control,
    streamingEndpoint: endpoints.streaming,
    lease: o.lease,
    labels: outcome.key.labels,
    curve: o.curve !== false,
  };
}

function send(res: http.ServerResponse, status: number, body: unknown): void {
  if (!canAnswer(res)) return;
  const text = JSON.stringify(body);
  res.writeHead(status, {
    "content-type": "application/json",
    "content-length": Buffer.byteLength(text),
    "cache-control": "no-store",
  });
  res.end(text);
}

export async function startEnrollServer(o: EnrollServerOptions): Promise<EnrollServer> {
  const log = o.logger.child({ component: "enroll" });
  // Refusals are answered here; anything else is a bug that createGuardedServer logs and answers 500.
  /** Answer 404 or 405 (body left unread) unless this is a POST to an enrollment path. */
  const misrouted = (req: http.IncomingMessage, res: http.ServerResponse, path: string): boolean => {
    if (path !== "/v1/enroll" && path !== "/v1/enroll/check") {
      req.resume();
      send(res, 404, { error: { code: "not_found", message: `no ${path} here; POST /v1/enroll` } });
      return true;
    }
    if (req.method === "POST") return false;
    req.resume();
    send(res, 405, { error: { code: "method_not_allowed", message: "use POST" } });
    return true;
  };
  /** Answer a refused enrollment with its code (logged with the peer's address) and close the connection. */
  const refuse = (err: Refusal, req: http.IncomingMessage, res: http.ServerResponse) => {
    // The client may be gone already (an aborted upload): its socket is then null.
    log.warn({ code: err.code, remote: req.socket?.remoteAddress }, `enrollment refused: ${err.message}`);
    // The rest of a too-large body is not read: the connection closes after the answer.
    res.shouldKeepAlive = false;
    const body: EnrollErrorBody = { error: { code: err.code, message: err.message, upgrade: err.upgrade } };
    send(res, STATUS[err.code], body);
  };
  const handler = async (req: http.IncomingMessage, res: http.ServerResponse) => {
    const path = (req.url ?? "/").split("?")[0];
    if (req.method === "GET" && path === "/v1/health")
      return send(res, 200, { ok: true, protocolVersion: PROTOCOL_VERSION });
    if (misrouted(req, res, path)) return;
    try {
      const body = await readBody(req);
      send(res, 200, path === "/v1/enroll/check" ? handleCheck(body, o) : handleEnroll(body, o));
    } catch (err) {
      if (!(err instanceof Refusal)) throw err;
      refuse(err, req, res);
    }
  };
  const server = createGuardedServer({
    what: "enrollment",
    logger: log,
    limits: o.limits ?? DEFAULT_HTTP_LIMITS,
    ...(o.plainHttp ? {} : { tls: { cert: o.identity.tls.cert, key: o.identity.tls.key } }),
    handle: handler,
    answer: (res, status, code, message) =>
      send(res, status, { error: { code: status >= 500 ? "internal" : code, message, upgrade: null } }),
  });
  await new Promise<void>((resolve, reject) => {
    server.once("error", reject);
    server.listen(o.listen.port, o.listen.host, () => {
      server.off("error", reject);
      resolve();
    });
  });
  const port = (server.address() as AddressInfo).port;
  const host = o.listen.host.includes(":") ? `[${o.listen.host}]` : o.listen.host;
  return {
    url: `${o.plainHttp ? "http" : "https"}://${host}:${port}`,
    port,
    close: () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
}
