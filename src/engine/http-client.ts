/**
 * @module HTTP to the engine over loopback: node:http with one keep-alive
 * Agent per engine run, so requests reuse connections instead of opening
 * one each. Streaming reads the response on demand (a slow consumer leaves
 * bytes in the socket, which slows the engine, rather than growing a
 * buffer here); aborting destroys the request, closing the connection,
 * which vLLM treats as a cancel. Every request carries the engine's API
 * key, when the run has one (only the node knows it: see supervisor.ts).
 */
import { Agent, type ClientRequest, request as httpRequest, type IncomingMessage } from "node:http";
import { bufferView } from "../core/buffer-view.ts";
import { XimError } from "../core/errors.ts";
import { type EngineEndpoint, parseEndpoint } from "./endpoint.ts";
import { EngineHttpError, type EngineReply, type EngineRequest } from "./engine.ts";
import { type SseBlock, SseBlockReader } from "./sse.ts";

/** The body's bytes, in parts sent one after the other (a salted body is the client's bytes and a tail, not copied into one). */
function encodeBody(body: EngineRequest["body"], stream: boolean): Buffer[] {
  if (body instanceof Uint8Array) return [bufferView(body)];
  if (Array.isArray(body)) return body.map(bufferView);
  return [Buffer.from(JSON.stringify(stream ? { ...body, stream: true } : body))];
}

/**
 * The bytes of a response as they arrive, one socket read at a time, read
 * on demand: the response is paused while a read waits for its consumer,
 * so a slow consumer leaves bytes in the socket. Event-driven, because
 * Readable's async iterator adds about 0.15 ms to every first read
 * (measured against the simulated engine), which is time to first token.
 */
async function* reads(res: IncomingMessage): AsyncGenerator<Buffer, void, undefined> {
  const ready: Buffer[] = [];
  let ended = false;
  let failure: Error | undefined;
  let wake: (() => void) | undefined;
  const notify = () => {
    const w = wake;
    wake = undefined;
    w?.();
  };
  const onData = (chunk: Buffer) => {
    ready.push(chunk);
    res.pause();
    notify();
  };
  const onEnd = () => {
    ended = true;
    notify();
  };
  const onError = (err: Error) => {
    failure = err;
    notify();
  };
  const onClose = () => {
    if (!ended && !failure) failure = new Error("the connection closed before the response ended");
    notify();
  };
  res.on("data", onData).on("end", onEnd).on("error", onError).on("close", onClose);
  try {
    for (;;) {
      const chunk = ready.shift();
      if (chunk) {
        if (ready.length === 0) res.resume();
        yield chunk;
      } else if (failure) throw failure;
      else if (ended) return;
      else await new Promise<void>((resolve) => (wake = resolve));
    }
  } finally {
    res.off("data", onData).off("end", onEnd).off("error", onError).off("close", onClose);
  }
}

async function readAll(res: IncomingMessage): Promise<Buffer> {
  const parts: Buffer[] = [];
  for await (const chunk of reads(res)) parts.push(chunk);
  return Buffer.concat(parts);
}

/**
 * A reused keep-alive connection that the engine had closed while it sat
 * idle (uvicorn's keep-alive, like Node's, is 5 s): the request failed
 * before any answer and the engine never saw it, so it is sent again on a
 * new connection. How long the close takes to reach this process is
 * scheduling, so without this a request after an idle pause fails by luck
 * on a loaded machine. Node's documented remedy (`request.reusedSocket`).
 */
function staleConnection(req: ClientRequest, err: unknown): boolean {
  const code = (err as NodeJS.ErrnoException | undefined)?.code;
  return req.reusedSocket && (code === "ECONNRESET" || code === "EPIPE");
}

function unreachable(baseUrl: string, err: unknown): XimError {
  return new XimError("XIM_ENGINE_UNREACHABLE", `cannot reach the engine at ${baseUrl}: ${String(err)}`, {
    cause: err,
  });
}

export class EngineHttpClient {
  /** `http://127.0.0.1:<port>` or `unix:<path>`. */
  readonly baseUrl: string;
  readonly #endpoint: EngineEndpoint;
  readonly #agent: Agent;

  /** `Bearer <key>` when the engine asks for one (vLLM's VLLM_API_KEY), sent on every request. */
  readonly #authorization: string | undefined;

  constructor(address: string, options: { apiKey?: string } = {}) {
    this.baseUrl = address;
    this.#endpoint = parseEndpoint(address);
    this.#agent = new Agent({ keepAlive: true });
    this.#authorization = options.apiKey ? `Bearer ${options.apiKey}` : undefined;
  }

  /** One request; sent once more on a new connection when its reused one was stale (staleConnection). */
  #send(
    method: string,
    path: string,
    body: Buffer[] | undefined,
    headers: Record<string, string>,
    signal: AbortSignal | undefined,
    timeoutMs?: number,
  ): { req: ClientRequest; response: Promise<IncomingMessage> } {
    const first = this.#sendOnce(method, path, body, headers, signal, timeoutMs);
    const sent = {
      req: first.req,
      response: first.response.catch((err: unknown) => {
        if (signal?.aborted || !staleConnection(first.req, err)) throw err;
        const again = this.#sendOnce(method, path, body, headers, signal, timeoutMs);
        sent.req = again.req;
        return again.response;
      }),
    };
    return sent;
  }

  #sendOnce(
    method: string,
    path: string,
    body: Buffer[] | undefined,
    headers: Record<string, string>,
    signal: AbortSignal | undefined,
    timeoutMs?: number,
  ) {
    const req = httpRequest({
      agent: this.#agent,
      ...("socketPath" in this.#endpoint
        ? { socketPath: this.#endpoint.socketPath, host: "localhost" }
        : { host: this.#endpoint.host, port: this.#endpoint.port }),
      method,
      path,
      headers: {
        ...headers,
        ...(body ? { "content-length": String(body.reduce((n, b) => n + b.length, 0)) } : {}),
        ...(this.#authorization ? { authorization: this.#authorization } : {}),
      },
      signal,
      timeout: timeoutMs,
    });
    const response = new Promise<IncomingMessage>((resolve, reject) => {
      req.once("response", resolve);
      req.once("error", reject);
      req.once("timeout", () => req.destroy(new Error(`no answer within ${timeoutMs} ms`)));
    });
    const parts = body ?? [];
    for (const part of parts.slice(0, -1)) req.write(part);
    req.end(parts.at(-1));
    return { req, response };
  }

  /** The status of GET /health, or undefined when nothing answers (vLLM refuses connections while loading). */
  async health(timeoutMs = 5000): Promise<number | undefined> {
    const { response } = this.#send("GET", "/health", undefined, {}, undefined, timeoutMs);
    try {
      const res = await response;
      res.resume();
      return res.statusCode;
    } catch {
      return undefined;
    }
  }

  /** GET a JSON document (/v1/models, /debug/state); undefined when it cannot be had. */
  async getJson(path: string, timeoutMs = 5000): Promise<unknown> {
    const { response } = this.#send(
      "GET",
      path,
      undefined,
      { accept: "application/json" },
      undefined,
      timeoutMs,
    );
    try {
      const res = await response;
      const body = await readAll(res);
      return res.statusCode === 200 ? JSON.parse(body.toString("utf8")) : undefined;
    } catch {
      return undefined;
    }
  }

  async complete(request: EngineRequest, signal?: AbortSignal): Promise<EngineReply> {
    signal?.throwIfAborted();
    const headers: Record<string, string> = { "content-type": "application/json" };
    if (request.requestId) headers["x-request-id"] = request.requestId;
    const { response } = this.#send("POST", request.path, encodeBody(request.body, false), headers, signal);
    let res: IncomingMessage;
    let body: Buffer;
    try {
      res = await response;
      body = await readAll(res);
    } catch (err) {
      signal?.throwIfAborted();
      throw unreachable(this.baseUrl, err);
    }
    const status = res.statusCode ?? 0;
    if (status < 200 || status >= 300) throw new EngineHttpError(status, body);
    return { status, contentType: res.headers["content-type"], body };
  }

  async *stream(request: EngineRequest, signal?: AbortSignal): AsyncGenerator<SseBlock, void, undefined> {
    signal?.throwIfAborted();
    const headers: Record<string, string> = {
      "content-type": "application/json",
      accept: "text/event-stream",
    };
    if (request.requestId) headers["x-request-id"] = request.requestId;
    const sent = this.#send("POST", request.path, encodeBody(request.body, true), headers, signal);
    const response = sent.response;
    let done = false;
    try {
      let res: IncomingMessage;
      try {
        res = await response;
      } catch (err) {
        signal?.throwIfAborted();
        throw unreachable(this.baseUrl, err);
      }
      const status = res.statusCode ?? 0;
      if (status < 200 || status >= 300) {
        done = true;
        throw new EngineHttpError(status, await readAll(res));
      }
      const type = res.headers["content-type"] ?? "";
      if (!type.startsWith("text/event-stream")) {
        done = true;
        const body = await readAll(res);
        throw new XimError(
          "XIM_ENGINE_PROTOCOL",
          `the engine answered a streaming request with ${type || "no content type"}, not text/event-stream`,
          { cause: body.toString("utf8", 0, 300) },
        );
      }
      // One block per socket read: under load a read holds many events, and the relay's
      // per-message costs are then paid once for all of them (bench/README.md).
      const reader = new SseBlockReader();
      try {
        for await (const chunk of reads(res)) {
          const block = reader.push(chunk);
          if (!block) continue;
          done = block.done;
          yield block;
          if (done) {
            res.resume();
            return;
          }
        }
      } catch (err) {
        signal?.throwIfAborted();
        throw unreachable(this.baseUrl, err);
      }
      signal?.throwIfAborted();
      throw new XimError("XIM_ENGINE_STREAM_TRUNCATED", "the engine closed the stream before data: [DONE]", {
        hint: "The engine probably crashed or was stopped mid-request; see its last output lines.",
      });
    } finally {
      // A consumer that stops early (break, error, abort) cancels the request at the engine.
      if (!done) sent.req.destroy();
    }
  }

  /** Close idle keep-alive connections and refuse new ones. */
  close(): void {
    this.#agent.destroy();
  }
}
