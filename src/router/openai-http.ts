/**
 * @module The router's OpenAI-compatible HTTP front: POST
 * /v1/chat/completions, POST /v1/completions, GET /v1/models and GET
 * /v1/models/{id} (plus GET /health, unauthenticated). Every request needs `Authorization: Bearer
 * xak_...` (api-keys.ts): the key decides the project (which nodes may
 * serve it) and the tenant (the node's cache salt). Every response
 * carries X-Request-ID (the client's own when it sent a valid one, else
 * the router's internal id: request-id.ts), and every error is OpenAI's
 * JSON error shape.
 */
import { type IncomingMessage, type Server, type ServerResponse, STATUS_CODES } from "node:http";
import type { AddressInfo } from "node:net";
import type { Duplex } from "node:stream";
import { guarded } from "../core/guard.ts";
import { createGuardedServer, DEFAULT_HTTP_LIMITS, type HttpLimits } from "../core/http-server.ts";
import type { Logger } from "../core/log.ts";
import type { RouterMetrics } from "../observability/router-metrics.ts";
import { lookupApiKey } from "./api-keys.ts";
import type { ControlPlane } from "./control-plane.ts";
import { openAiErrorBody, type RouterRelay, sendJsonError } from "./dispatch.ts";
import { clientRequestIdOf, mintRequestId } from "./request-id.ts";
import type { RouterStore } from "./store.ts";

/** Bodies above this are refused with 413 (a dispatch must fit one protocol message). */
export const MAX_BODY_BYTES = 8 * 1024 * 1024;

export interface OpenAiServer {
  port: number;
  url: string;
  close: () => Promise<void>;
}

export interface OpenAiServerOptions {
  host: string;
  port: number;
  store: RouterStore;
  controlPlane: ControlPlane;
  relay: RouterRelay;
  logger: Logger;
  metrics?: RouterMetrics;
  /** Slow-client and per-client connection limits; the documented defaults when absent. */
  limits?: HttpLimits;
}

class BodyTooLarge extends Error {}

/** An aborted upload: an expected event, logged without a stack (core/guard.ts isPeerGone). */
function peerGone(message: string): Error {
  return Object.assign(new Error(message), { code: "ERR_STREAM_PREMATURE_CLOSE" });
}

/**
 * The request body, refused past MAX_BODY_BYTES. Event-driven: Readable's
 * async iterator costs about 0.15 ms a request here (time to first token).
 */
function readBody(req: IncomingMessage): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    const parts: Buffer[] = [];
    let size = 0;
    req.on("data", (chunk: Buffer) => {
      size += chunk.length;
      if (size > MAX_BODY_BYTES) {
        req.removeAllListeners("data");
        req.resume();
        reject(new BodyTooLarge());
        return;
      }
      parts.push(chunk);
    });
    req.once("end", () => resolve(parts.length === 1 ? parts[0] : Buffer.concat(parts)));
    req.once("error", reject);
    req.once("close", () => {
      if (!req.complete) reject(peerGone("the client closed the connection before the body ended"));
    });
  });
}

/** GET /v1/models/{id}: the id percent-encoded (the OpenAI SDKs encode a '/' in it) or not. */
const MODEL_PATH = "/v1/models/";

function modelCard(id: string) {
  return { id, object: "model", created: 0, owned_by: "xim" };
}

/** The SDK's models.retrieve: a served model's card (true), else OpenAI's 400 or 404 (false). */
function retrieveModel(res: ServerResponse, encodedId: string, served: Set<string>): boolean {
  let id: string;
  try {
    id = decodeURIComponent(encodedId);
  } catch {
    sendJsonError(res, 400, "invalid_model_id", "the model id in the path is not valid percent-encoding", {
      param: "model",
    });
    return false;
  }
  if (!served.has(id)) {
    sendJsonError(
      res,
      404,
      "model_not_found",
      `the model '${id}' does not exist or no node of this project serves it`,
      { param: "model" },
    );
    return false;
  }
  res.writeHead(200, { "content-type": "application/json" }).end(JSON.stringify(modelCard(id)));
  return true;
}

function bracket(host: string): string {
  return host.includes(":") ? `[${host}]` : host;
}

export async function startOpenAiServer(o: OpenAiServerOptions): Promise<OpenAiServer> {
  const log = o.logger.child({ component: "http" });
  const server: Server = createGuardedServer({
    what: "OpenAI API",
    logger: log,
    limits: o.limits ?? DEFAULT_HTTP_LIMITS,
    handle: (req, res) => handle(o, req, res),
    answer: sendJsonError,
  });
  server.keepAliveTimeout = 65_000;
  // Requests Node cannot parse (bad method, header too large, bytes that are not HTTP) would get
  // a bare 400 without a body: give them OpenAI's error shape like every other answer.
  server.on(
    "clientError",
    guarded(
      log,
      "OpenAI API client error",
      (err: NodeJS.ErrnoException, socket: Duplex) => {
        if (err.code === "ECONNRESET" || !socket.writable) {
          socket.destroy();
          return;
        }
        const status =
          err.code === "HPE_HEADER_OVERFLOW" ? 431 : err.code === "ERR_HTTP_REQUEST_TIMEOUT" ? 408 : 400;
        const body = openAiErrorBody(
          status,
          status === 431 ? "headers_too_large" : status === 408 ? "request_timeout" : "bad_request",
          status === 431
            ? "the request headers are too large"
            : status === 408
              ? "the request was not received in time"
              : `the HTTP request is malformed (${err.code ?? "parse error"})`,
        );
        socket.end(
          `HTTP/1.1 ${status} ${STATUS_CODES[status]}\r\ncontent-type: application/json\r\n` +
            `content-length: ${Buffer.byteLength(body)}\r\nconnection: close\r\n\r\n${body}`,
        );
      },
      (_failure, _err, socket) => socket.destroy(),
    ),
  );
  await new Promise<void>((resolve, reject) => {
    server.once("error", reject);
    server.listen(o.port, o.host, () => resolve());
  });
  const port = (server.address() as AddressInfo).port;
  const host = o.host === "0.0.0.0" || o.host === "::" ? "127.0.0.1" : o.host;
  return {
    port,
    url: `http://${bracket(host)}:${port}`,
    close: () =>
      new Promise((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
}

async function handle(o: OpenAiServerOptions, req: IncomingMessage, res: ServerResponse): Promise<void> {
  const receivedAt = Date.now();
  // Streams are routed by the internal id alone; the client's id is only echoed and logged.
  const requestId = mintRequestId();
  const clientRequestId = clientRequestIdOf(req.headers["x-request-id"]);
  res.setHeader("x-request-id", clientRequestId ?? requestId);
  const path = (req.url ?? "/").split("?")[0];
  const count = (outcome: string) => o.metrics?.requests.inc({ outcome });

  if (path === "/health" && req.method === "GET") {
    res.writeHead(200, { "content-type": "text/plain" }).end("ok\n");
    return;
  }
  const route =
    path === "/v1/models" || path.startsWith(MODEL_PATH)
      ? "models"
      : path === "/v1/chat/completions" || path === "/v1/completions"
        ? "completion"
        : undefined;
  if (!route) {
    req.resume();
    count("client_error");
    return sendJsonError(
      res,
      404,
      "not_found",
      `no route ${req.method} ${path}: this router serves /v1/chat/completions, /v1/completions, /v1/models and /v1/models/{id}`,
    );
  }
  const wantMethod = route === "models" ? "GET" : "POST";
  if (req.method !== wantMethod) {
    req.resume();
    res.setHeader("allow", wantMethod);
    count("client_error");
    return sendJsonError(res, 405, "method_not_allowed", `${path} takes ${wantMethod}, not ${req.method}`);
  }
  const auth = req.headers.authorization ?? "";
  const m = /^Bearer\s+(\S+)$/i.exec(auth);
  const identity = m ? lookupApiKey(o.store, m[1]) : undefined;
  if (!identity) {
    req.resume();
    count("client_error");
    return sendJsonError(
      res,
      401,
      "invalid_api_key",
      m ? "the API key is unknown or revoked" : "missing API key: send 'Authorization: Bearer xak_...'",
    );
  }

  if (route === "models") {
    const models = new Set<string>();
    for (const l of o.controlPlane.readyLeases())
      if (l.project === identity.project) for (const name of l.status.models) models.add(name);
    if (path !== "/v1/models") {
      if (!retrieveModel(res, path.slice(MODEL_PATH.length), models)) count("client_error");
      return;
    }
    const body = JSON.stringify({ object: "list", data: [...models].sort().map(modelCard) });
    res.writeHead(200, { "content-type": "application/json" }).end(body);
    return;
  }

  let raw: Buffer;
  try {
    raw = await readBody(req);
  } catch (err) {
    count("client_error");
    if (!(err instanceof BodyTooLarge)) throw err;
    // The rest of a too-large body is not read: the connection closes after the answer.
    res.shouldKeepAlive = false;
    return sendJsonError(
      res,
      413,
      "request_too_large",
      `the request body is larger than ${MAX_BODY_BYTES} bytes`,
    );
  }
  let parsed: unknown;
  try {
    parsed = JSON.parse(raw.toString("utf8"));
  } catch (err) {
    count("client_error");
    return sendJsonError(
      res,
      400,
      "invalid_json",
      `the request body is not valid JSON: ${(err as Error).message}`,
    );
  }
  if (parsed === null || typeof parsed !== "object" || Array.isArray(parsed)) {
    count("client_error");
    return sendJsonError(res, 400, "invalid_request", "the request body must be a JSON object");
  }
  const body = parsed as Record<string, unknown>;
  if (typeof body.model !== "string" || body.model === "") {
    count("client_error");
    return sendJsonError(res, 400, "missing_model", "you must provide a model parameter");
  }
  if (body.stream !== undefined && typeof body.stream !== "boolean") {
    count("client_error");
    return sendJsonError(res, 400, "invalid_stream", "'stream' must be true or false");
  }
  const gone = new AbortController();
  res.once("close", () => {
    if (!res.writableFinished) gone.abort();
  });
  await o.relay.serve(
    {
      requestId,
      clientRequestId,
      project: identity.project,
      tenant: identity.tenant,
      model: body.model,
      path: path as "/v1/chat/completions" | "/v1/completions",
      stream: body.stream === true,
      body: raw,
      signal: gone.signal,
      receivedAt,
    },
    res,
  );
}
