/**
 * @module The router's OpenAI-compatible HTTP front: POST
 * /v1/chat/completions, POST /v1/completions, GET /v1/models and GET
 * /v1/models/{id} (plus GET /health, unauthenticated). Every request needs `Authorization: Bearer
 * xak_...` (api-keys.ts): the key decides the project (which nodes may
 * serve it) and the tenant (the node's cache salt). Every response
 * carries X-Request-ID (the client's own when it sent a valid one, else
 * the router's internal id: request-id.ts), and every error is OpenAI's
 * JSON error shape. Inference answers and refusals carry Server-Timing
 * (server-timing.ts): the queue wait, the router's and the node's own time.
 */
import { isUtf8 } from "node:buffer";
import { type IncomingMessage, type Server, type ServerResponse, STATUS_CODES } from "node:http";
import type { AddressInfo } from "node:net";
import type { Duplex } from "node:stream";
import { guarded } from "../core/guard.ts";
import { createGuardedServer, DEFAULT_HTTP_LIMITS, type HttpLimits } from "../core/http-server.ts";
import type { Logger } from "../core/log.ts";
import type { RouterMetrics } from "../observability/router-metrics.ts";
import {
  fieldValue,
  type JsonObjectScan,
  JsonScanError,
  scanJsonObject,
} from "../protocol/json-object-scan.ts";
import { lookupApiKey } from "./api-keys.ts";
import type { ControlPlane } from "./control-plane.ts";
import { openAiErrorBody, type RouterRelay, sendJsonError } from "./dispatch.ts";
import { clientRequestIdOf, mintRequestId } from "./request-id.ts";
import { RequestTiming, SERVER_TIMING_HEADER } from "./server-timing.ts";
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

/** Where a request goes: the model list and cards, or an inference. */
type Route = "models" | "completion";

/** One request at the front: what every step below needs about it. */
interface FrontRequest {
  o: OpenAiServerOptions;
  req: IncomingMessage;
  res: ServerResponse;
  path: string;
  timing: RequestTiming;
}

async function handle(o: OpenAiServerOptions, req: IncomingMessage, res: ServerResponse): Promise<void> {
  const timing = new RequestTiming();
  const receivedAt = Date.now();
  // Streams are routed by the internal id alone; the client's id is only echoed and logged.
  const requestId = mintRequestId();
  const clientRequestId = clientRequestIdOf(req.headers["x-request-id"]);
  res.setHeader("x-request-id", clientRequestId ?? requestId);
  const path = (req.url ?? "/").split("?")[0];
  if (path === "/health" && req.method === "GET") {
    res.writeHead(200, { "content-type": "text/plain" }).end("ok\n");
    return;
  }
  const front: FrontRequest = { o, req, res, path, timing };
  const admitted = admit(front);
  if (!admitted) return;
  if (admitted.route === "models") return listModels(front, admitted.identity.project);
  const body = await readInference(front);
  if (!body) return;
  const gone = new AbortController();
  res.once("close", () => {
    if (!res.writableFinished) gone.abort();
  });
  await o.relay.serve(
    {
      requestId,
      clientRequestId,
      project: admitted.identity.project,
      tenant: admitted.identity.tenant,
      model: body.model,
      path: path as "/v1/chat/completions" | "/v1/completions",
      stream: body.stream,
      body: body.raw,
      signal: gone.signal,
      receivedAt,
      timing,
    },
    res,
  );
}

/**
 * Answer a request the front refuses (the body is not read; the client's
 * error, counted as such), with the router's time in Server-Timing.
 */
function refuse(
  f: FrontRequest,
  status: number,
  code: string,
  message: string,
  o: { param?: string; drain?: boolean } = {},
): void {
  if (o.drain !== false) f.req.resume();
  f.o.metrics?.requests.inc({ outcome: "client_error" });
  sendJsonError(f.res, status, code, message, {
    param: o.param,
    headers: { [SERVER_TIMING_HEADER]: f.timing.header() },
  });
}

/** The route, its method and the API key: the route and the key's identity, or undefined once refused. */
function admit(
  f: FrontRequest,
): { route: Route; identity: NonNullable<ReturnType<typeof lookupApiKey>> } | undefined {
  const { req, path } = f;
  const route: Route | undefined =
    path === "/v1/models" || path.startsWith(MODEL_PATH)
      ? "models"
      : path === "/v1/chat/completions" || path === "/v1/completions"
        ? "completion"
        : undefined;
  if (!route) {
    refuse(
      f,
      404,
      "not_found",
      `no route ${req.method} ${path}: this router serves /v1/chat/completions, /v1/completions, /v1/models and /v1/models/{id}`,
    );
    return undefined;
  }
  const wantMethod = route === "models" ? "GET" : "POST";
  if (req.method !== wantMethod) {
    f.res.setHeader("allow", wantMethod);
    refuse(f, 405, "method_not_allowed", `${path} takes ${wantMethod}, not ${req.method}`);
    return undefined;
  }
  const m = /^Bearer\s+(\S+)$/i.exec(req.headers.authorization ?? "");
  const identity = m ? lookupApiKey(f.o.store, m[1]) : undefined;
  if (!identity) {
    refuse(
      f,
      401,
      "invalid_api_key",
      m ? "the API key is unknown or revoked" : "missing API key: send 'Authorization: Bearer xak_...'",
    );
    return undefined;
  }
  return { route, identity };
}

/** GET /v1/models and /v1/models/{id}: the models the project's ready nodes serve. */
function listModels(f: FrontRequest, project: string): void {
  const models = new Set<string>();
  for (const l of f.o.controlPlane.readyLeases())
    if (l.project === project) for (const name of l.status.models) models.add(name);
  if (f.path !== "/v1/models") {
    if (!retrieveModel(f.res, f.path.slice(MODEL_PATH.length), models))
      f.o.metrics?.requests.inc({ outcome: "client_error" });
    return;
  }
  const body = JSON.stringify({ object: "list", data: [...models].sort().map(modelCard) });
  f.res.writeHead(200, { "content-type": "application/json" }).end(body);
}

/**
 * An inference request's body: read (at most MAX_BODY_BYTES), parsed and
 * checked for what the router itself needs (the model, the stream flag);
 * the rest is the engine's to judge. Undefined once refused.
 */
async function readInference(
  f: FrontRequest,
): Promise<{ raw: Buffer; model: string; stream: boolean } | undefined> {
  let raw: Buffer;
  try {
    f.timing.uploadStarted();
    raw = await readBody(f.req);
    f.timing.uploadEnded();
  } catch (err) {
    if (!(err instanceof BodyTooLarge)) {
      f.o.metrics?.requests.inc({ outcome: "client_error" });
      throw err;
    }
    // The rest of a too-large body is not read: the connection closes after the answer.
    f.res.shouldKeepAlive = false;
    refuse(f, 413, "request_too_large", `the request body is larger than ${MAX_BODY_BYTES} bytes`, {
      drain: false,
    });
    return undefined;
  }
  let scan: JsonObjectScan;
  try {
    scan = scanJsonObject(raw);
  } catch (err) {
    if (!(err instanceof JsonScanError)) throw err;
    refuseBody(f, raw, err);
    return undefined;
  }
  const model = fieldValue(raw, scan, "model");
  const stream = fieldValue(raw, scan, "stream");
  if (typeof model !== "string" || model === "") {
    refuse(f, 400, "missing_model", "you must provide a model parameter");
    return undefined;
  }
  if (stream !== undefined && typeof stream !== "boolean") {
    refuse(f, 400, "invalid_stream", "'stream' must be true or false");
    return undefined;
  }
  return { raw, model, stream: stream === true };
}

/** A body that is not one JSON object: invalid JSON (400 invalid_json), or JSON of another shape (400 invalid_request). */
function refuseBody(f: FrontRequest, raw: Buffer, err: JsonScanError): void {
  let isJson = isUtf8(raw);
  try {
    // Only on this error path: tells a client's broken JSON from a well-formed array, string or number.
    if (isJson) JSON.parse(raw.toString("utf8"));
  } catch {
    isJson = false;
  }
  if (isJson) refuse(f, 400, "invalid_request", `the request body must be a JSON object: ${err.message}`);
  else refuse(f, 400, "invalid_json", `the request body is not valid JSON: ${err.message}`);
}
