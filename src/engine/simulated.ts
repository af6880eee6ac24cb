/**
 * @module The simulated engine: an OpenAI-compatible HTTP server with the
 * contract of `vllm serve`, for tests, the demo and benchmarks where no GPU
 * exists.
 *
 * - Readiness: the server listens at once (so a caller learns its port) and
 *   answers 503 on /health and every API path until the load time has
 *   passed, then 200. (Real vLLM refuses connections until ready, research
 *   vllm.md §7; a supervisor that treats "refused" and "503" alike as "not
 *   ready yet" handles both.)
 * - /v1/models, /v1/completions, /v1/chat/completions with and without
 *   `stream`; SSE `data: {...}\n\n` chunks ending in `data: [DONE]\n\n`;
 *   a usage chunk when `stream_options.include_usage` is true.
 * - Deterministic output: the text is a function of the prompt, and the
 *   `id` of the X-Request-Id header (else of the prompt); `created` is fixed
 *   per server. So the same request gives the same bytes (cache_salt does
 *   not change the output).
 * - Abort: a client that disconnects before the response ends stops the
 *   generation and is counted.
 * - cache_salt: validated as vLLM does (non-empty string), counted per salt
 *   hash in GET /metrics, and the raw salts of recent requests are in
 *   GET /debug/state (a test hook vLLM does not have).
 * - Errors use OpenAI's shape: {"error":{"message","type","param","code"}}.
 */
import { createHash } from "node:crypto";
import { once } from "node:events";
import { createServer, type IncomingMessage, type Server, type ServerResponse } from "node:http";
import type { AddressInfo } from "node:net";
import { sleep as realSleep, type Sleep } from "../core/backoff.ts";
import { sseEvent } from "./sse.ts";

export interface SimulatedEngineOptions {
  /** The served model name; requests must name it. */
  model: string;
  /** The model path reported as `root` in /v1/models; defaults to the name. */
  root?: string;
  /** Time from listening to ready. */
  loadTimeMs?: number;
  /** Time to first token. */
  ttftMs?: number;
  /** Inter-token latency; 0 writes tokens as fast as the client reads them. */
  itlMs?: number;
  /** Tokens per completion (a request's max_tokens can lower it; with ignore_eos, max_tokens sets it). */
  outputTokens?: number;
  /** Requests generated at once, as vLLM's --max-num-seqs; more wait in a queue. Default: no limit. */
  maxNumSeqs?: number;
  maxModelLen?: number;
  /** After being ready this long, /health answers 503 as vLLM's does once its engine died. */
  unhealthyAfterMs?: number;
  /** `created` of every response, epoch seconds; defaults to the server's creation time. */
  created?: number;
  sleep?: Sleep;
}

export type SimulatedAddress =
  | { host: string; port: number; baseUrl: string }
  | { socketPath: string; baseUrl: string };

export interface SimulatedRequestRecord {
  requestId: string;
  path: string;
  stream: boolean;
  /** The cache_salt the engine received, or null. */
  cacheSalt: string | null;
  outcome: "running" | "completed" | "aborted";
}

export interface SimulatedEngineStats {
  state: "loading" | "ready";
  model: string;
  requests: number;
  completed: number;
  aborts: number;
  running: number;
  waiting: number;
  errors: number;
  promptTokens: number;
  generationTokens: number;
  /** Requests per sha256(salt) prefix (16 hex). */
  saltCounts: Record<string, number>;
  /** The raw salts of the last 100 requests that had one, oldest first. */
  lastSalts: string[];
  /** The last 100 requests, oldest first. */
  lastRequests: SimulatedRequestRecord[];
}

const KEEP = 100;
const MAX_BODY = 16 * 1024 * 1024;

const VOCABULARY = (
  "the a of and to in is it that for on with as was at by an be this from or are not but have had " +
  "engine token stream node router lease model cache salt credit window relay simulated fast quiet " +
  "river stone light cloud north paper green orange signal bridge garden window letter silver"
).split(" ");

export type ErrorType =
  | "BadRequestError"
  | "NotFoundError"
  | "ServiceUnavailableError"
  | "InternalServerError";

export function openAiError(message: string, type: ErrorType, code: number, param: string | null = null) {
  return { error: { message, type, param, code } };
}

function sha256(text: string | Buffer): Buffer {
  return createHash("sha256").update(text).digest();
}

/** Words counted as tokens: a deterministic stand-in for a tokenizer. */
function countWords(text: string): number {
  const n = text.split(/\s+/).filter(Boolean).length;
  return n;
}

function textOfContent(content: unknown): string {
  if (typeof content === "string") return content;
  if (Array.isArray(content)) {
    return content
      .map((p) =>
        p && typeof p === "object" && typeof (p as { text?: unknown }).text === "string"
          ? (p as { text: string }).text
          : "",
      )
      .join(" ");
  }
  return "";
}

interface Parsed {
  chat: boolean;
  stream: boolean;
  includeUsage: boolean;
  promptText: string;
  promptTokens: number;
  maxTokens: number | undefined;
  ignoreEos: boolean;
  cacheSalt: string | null;
}

class RequestError extends Error {
  readonly status: number;
  readonly type: ErrorType;
  readonly param: string | null;
  constructor(status: number, type: ErrorType, message: string, param: string | null = null) {
    super(message);
    this.status = status;
    this.type = type;
    this.param = param;
  }
}

export class SimulatedEngineServer {
  readonly options: Required<Omit<SimulatedEngineOptions, "root" | "sleep" | "unhealthyAfterMs">> & {
    root: string;
    unhealthyAfterMs: number | undefined;
  };
  readonly #sleep: Sleep;
  readonly #server: Server;
  #ready = false;
  #dead = false;
  #deathTimer: NodeJS.Timeout | undefined;
  #loadTimer: NodeJS.Timeout | undefined;
  #readyWaiters: Array<() => void> = [];
  #stats = {
    requests: 0,
    completed: 0,
    aborts: 0,
    running: 0,
    waiting: 0,
    errors: 0,
    promptTokens: 0,
    generationTokens: 0,
  };
  #queue: Array<() => void> = [];
  #saltCounts = new Map<string, number>();
  #lastSalts: string[] = [];
  #lastRequests: SimulatedRequestRecord[] = [];
  /** Connections, so close() does not wait for idle keep-alive sockets. */
  #sockets = new Set<import("node:net").Socket>();

  constructor(options: SimulatedEngineOptions) {
    this.options = {
      model: options.model,
      root: options.root ?? options.model,
      loadTimeMs: options.loadTimeMs ?? 0,
      ttftMs: options.ttftMs ?? 0,
      itlMs: options.itlMs ?? 0,
      outputTokens: options.outputTokens ?? 16,
      maxNumSeqs: options.maxNumSeqs ?? Number.POSITIVE_INFINITY,
      maxModelLen: options.maxModelLen ?? 4096,
      unhealthyAfterMs: options.unhealthyAfterMs,
      created: options.created ?? Math.floor(Date.now() / 1000),
    };
    this.#sleep = options.sleep ?? realSleep;
    this.#server = createServer({ keepAlive: true }, (req, res) => {
      this.#handle(req, res).catch((err: unknown) => {
        // The answer to a failure must not fail in turn (a rejection here would end the process).
        try {
          if (!res.headersSent) this.#json(res, 500, openAiError(String(err), "InternalServerError", 500));
          else res.destroy();
        } catch {
          res.destroy();
        }
      });
    });
    this.#server.on("connection", (s) => {
      this.#sockets.add(s);
      s.once("close", () => this.#sockets.delete(s));
    });
  }

  get ready(): boolean {
    return this.#ready;
  }

  /** Listen on a TCP port (0 = chosen by the OS) or, given a path, a Unix socket; the load time starts now. */
  async listen(port: number | string = 0, host = "127.0.0.1"): Promise<SimulatedAddress> {
    if (typeof port === "string") this.#server.listen(port);
    else this.#server.listen(port, host);
    await once(this.#server, "listening");
    const finish = () => {
      this.#ready = true;
      const after = this.options.unhealthyAfterMs;
      if (after !== undefined) {
        this.#deathTimer = setTimeout(() => {
          this.#dead = true;
        }, after);
      }
      for (const w of this.#readyWaiters.splice(0)) w();
    };
    if (this.options.loadTimeMs > 0) this.#loadTimer = setTimeout(finish, this.options.loadTimeMs);
    else finish();
    if (typeof port === "string") return { socketPath: port, baseUrl: `unix:${port}` };
    const address = this.#server.address() as AddressInfo;
    const shown = address.family === "IPv6" ? `[${address.address}]` : address.address;
    return { host: address.address, port: address.port, baseUrl: `http://${shown}:${address.port}` };
  }

  /** Resolves when the load time has passed. */
  whenReady(): Promise<void> {
    if (this.#ready) return Promise.resolve();
    return new Promise((resolve) => this.#readyWaiters.push(resolve));
  }

  /** Stop listening and drop every connection (in-flight streams end abruptly, as a killed engine's would). */
  async close(): Promise<void> {
    clearTimeout(this.#loadTimer);
    clearTimeout(this.#deathTimer);
    const closed = new Promise<void>((resolve) => this.#server.close(() => resolve()));
    for (const s of this.#sockets) s.destroy();
    await closed;
  }

  stats(): SimulatedEngineStats {
    return {
      state: this.#ready ? "ready" : "loading",
      model: this.options.model,
      ...this.#stats,
      saltCounts: Object.fromEntries(this.#saltCounts),
      lastSalts: [...this.#lastSalts],
      lastRequests: this.#lastRequests.map((r) => ({ ...r })),
    };
  }

  /** Prometheus text exposition; vLLM's own gauge names where one exists. */
  metrics(): string {
    const s = this.#stats;
    const m = JSON.stringify(this.options.model);
    const lines = [
      "# HELP vllm:num_requests_running Requests being generated.",
      "# TYPE vllm:num_requests_running gauge",
      `vllm:num_requests_running{model_name=${m}} ${s.running}`,
      "# HELP vllm:num_requests_waiting Requests waiting for a slot (--max-num-seqs).",
      "# TYPE vllm:num_requests_waiting gauge",
      `vllm:num_requests_waiting{model_name=${m}} ${s.waiting}`,
      "# HELP xim_sim_requests_total Completion requests received.",
      "# TYPE xim_sim_requests_total counter",
      `xim_sim_requests_total ${s.requests}`,
      "# HELP xim_sim_requests_completed_total Completion requests answered in full.",
      "# TYPE xim_sim_requests_completed_total counter",
      `xim_sim_requests_completed_total ${s.completed}`,
      "# HELP xim_sim_request_aborts_total Requests whose client disconnected before the end.",
      "# TYPE xim_sim_request_aborts_total counter",
      `xim_sim_request_aborts_total ${s.aborts}`,
      "# HELP xim_sim_request_errors_total Requests answered with an error.",
      "# TYPE xim_sim_request_errors_total counter",
      `xim_sim_request_errors_total ${s.errors}`,
      "# HELP xim_sim_prompt_tokens_total Prompt tokens processed.",
      "# TYPE xim_sim_prompt_tokens_total counter",
      `xim_sim_prompt_tokens_total ${s.promptTokens}`,
      "# HELP xim_sim_generation_tokens_total Tokens generated.",
      "# TYPE xim_sim_generation_tokens_total counter",
      `xim_sim_generation_tokens_total ${s.generationTokens}`,
      "# HELP xim_sim_cache_salts_distinct Distinct cache_salt values seen.",
      "# TYPE xim_sim_cache_salts_distinct gauge",
      `xim_sim_cache_salts_distinct ${this.#saltCounts.size}`,
      "# HELP xim_sim_cache_salt_requests_total Requests per cache_salt, labelled by the first 16 hex of sha256(salt).",
      "# TYPE xim_sim_cache_salt_requests_total counter",
      ...[...this.#saltCounts].map(([h, n]) => `xim_sim_cache_salt_requests_total{salt_sha256="${h}"} ${n}`),
    ];
    return `${lines.join("\n")}\n`;
  }

  #json(res: ServerResponse, status: number, body: unknown): void {
    const bytes = Buffer.from(JSON.stringify(body));
    res.writeHead(status, { "content-type": "application/json", "content-length": bytes.length });
    res.end(bytes);
  }

  async #handle(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const path = (req.url ?? "/").split("?")[0];
    const method = req.method ?? "GET";
    if (path === "/health" && method === "GET") {
      res.writeHead(this.#ready && !this.#dead ? 200 : 503, { "content-length": 0 });
      res.end();
      return;
    }
    if (path === "/metrics" && method === "GET") {
      const text = this.metrics();
      res.writeHead(200, { "content-type": "text/plain; version=0.0.4; charset=utf-8" });
      res.end(text);
      return;
    }
    if (path === "/debug/state" && method === "GET") return this.#json(res, 200, this.stats());
    const api = ["/v1/models", "/v1/completions", "/v1/chat/completions"];
    if (!api.includes(path)) {
      return this.#json(res, 404, openAiError(`no route for ${method} ${path}`, "NotFoundError", 404));
    }
    const wantMethod = path === "/v1/models" ? "GET" : "POST";
    if (method !== wantMethod) {
      res.setHeader("allow", wantMethod);
      return this.#json(res, 405, openAiError(`${path} takes ${wantMethod}`, "BadRequestError", 405));
    }
    if (!this.#ready) {
      return this.#json(res, 503, openAiError("the model is still loading", "ServiceUnavailableError", 503));
    }
    if (path === "/v1/models") {
      return this.#json(res, 200, {
        object: "list",
        data: [
          {
            id: this.options.model,
            object: "model",
            created: this.options.created,
            owned_by: "vllm",
            root: this.options.root,
            parent: null,
            max_model_len: this.options.maxModelLen,
          },
        ],
      });
    }
    return this.#completion(req, res, path === "/v1/chat/completions");
  }

  async #readBody(req: IncomingMessage): Promise<Buffer> {
    const parts: Buffer[] = [];
    let size = 0;
    for await (const chunk of req) {
      size += (chunk as Buffer).length;
      if (size > MAX_BODY)
        throw new RequestError(413, "BadRequestError", `request body over ${MAX_BODY} bytes`);
      parts.push(chunk as Buffer);
    }
    return Buffer.concat(parts);
  }

  #parse(raw: Buffer, chat: boolean): Parsed {
    let body: unknown;
    try {
      body = JSON.parse(raw.toString("utf8"));
    } catch (err) {
      throw new RequestError(400, "BadRequestError", `the body is not JSON: ${(err as Error).message}`);
    }
    if (body === null || typeof body !== "object" || Array.isArray(body)) {
      throw new RequestError(400, "BadRequestError", "the body must be a JSON object");
    }
    const b = body as Record<string, unknown>;
    if (b.model !== this.options.model) {
      throw new RequestError(
        404,
        "NotFoundError",
        `The model \`${String(b.model)}\` does not exist.`,
        "model",
      );
    }
    if (
      "cache_salt" in b &&
      b.cache_salt !== null &&
      (typeof b.cache_salt !== "string" || b.cache_salt === "")
    ) {
      throw new RequestError(
        400,
        "BadRequestError",
        "Parameter 'cache_salt' must be a non-empty string if provided.",
        "cache_salt",
      );
    }
    let promptText: string;
    if (chat) {
      if (!Array.isArray(b.messages) || b.messages.length === 0) {
        throw new RequestError(400, "BadRequestError", "'messages' must be a non-empty array", "messages");
      }
      promptText = b.messages
        .map(
          (m) =>
            `${String((m as { role?: unknown })?.role)}: ${textOfContent((m as { content?: unknown })?.content)}`,
        )
        .join("\n");
    } else {
      if (typeof b.prompt === "string") promptText = b.prompt;
      else if (Array.isArray(b.prompt) && b.prompt.every((p) => typeof p === "string"))
        promptText = b.prompt.join("\n");
      else
        throw new RequestError(
          400,
          "BadRequestError",
          "'prompt' must be a string or an array of strings",
          "prompt",
        );
    }
    const rawMax = chat ? (b.max_completion_tokens ?? b.max_tokens) : b.max_tokens;
    let maxTokens: number | undefined;
    if (rawMax !== undefined && rawMax !== null) {
      if (typeof rawMax !== "number" || !Number.isInteger(rawMax) || rawMax < 1) {
        throw new RequestError(
          400,
          "BadRequestError",
          "max_tokens must be an integer of at least 1",
          "max_tokens",
        );
      }
      maxTokens = rawMax;
    }
    const so = b.stream_options as { include_usage?: unknown } | undefined;
    return {
      chat,
      stream: b.stream === true,
      includeUsage: so?.include_usage === true,
      promptText,
      promptTokens: Math.max(1, countWords(promptText)),
      maxTokens,
      ignoreEos: b.ignore_eos === true,
      cacheSalt: typeof b.cache_salt === "string" ? b.cache_salt : null,
    };
  }

  #record(record: SimulatedRequestRecord): void {
    this.#lastRequests.push(record);
    if (this.#lastRequests.length > KEEP) this.#lastRequests.shift();
    if (record.cacheSalt !== null) {
      const h = sha256(record.cacheSalt).toString("hex").slice(0, 16);
      this.#saltCounts.set(h, (this.#saltCounts.get(h) ?? 0) + 1);
      this.#lastSalts.push(record.cacheSalt);
      if (this.#lastSalts.length > KEEP) this.#lastSalts.shift();
    }
  }

  async #completion(req: IncomingMessage, res: ServerResponse, chat: boolean): Promise<void> {
    let parsed: Parsed;
    try {
      parsed = this.#parse(await this.#readBody(req), chat);
    } catch (err) {
      this.#stats.errors++;
      if (err instanceof RequestError) {
        return this.#json(res, err.status, openAiError(err.message, err.type, err.status, err.param));
      }
      throw err;
    }
    const seed = sha256(`${chat ? "chat" : "completion"}\n${parsed.promptText}`);
    const header = req.headers["x-request-id"];
    const base = typeof header === "string" && header.length > 0 ? header : seed.toString("hex").slice(0, 32);
    const id = `${chat ? "chatcmpl" : "cmpl"}-${base}`;
    const n =
      parsed.ignoreEos && parsed.maxTokens !== undefined
        ? parsed.maxTokens
        : Math.min(this.options.outputTokens, parsed.maxTokens ?? Number.POSITIVE_INFINITY);
    const finishReason = n === parsed.maxTokens ? "length" : "stop";
    const record: SimulatedRequestRecord = {
      requestId: base,
      path: chat ? "/v1/chat/completions" : "/v1/completions",
      stream: parsed.stream,
      cacheSalt: parsed.cacheSalt,
      outcome: "running",
    };
    this.#record(record);
    this.#stats.requests++;

    // The client's disconnect aborts the generation, as vLLM's does.
    const gone = new AbortController();
    const goneP = new Promise<void>((resolve) =>
      gone.signal.addEventListener("abort", () => resolve(), { once: true }),
    );
    res.once("close", () => {
      if (!res.writableFinished) gone.abort();
    });
    const slot = await this.#acquire(gone.signal);
    if (slot) this.#stats.promptTokens += parsed.promptTokens;
    let generated = 0;
    const token = (i: number) => {
      const word = VOCABULARY[(seed.readUInt16BE((i * 2) % 30) ^ (i * 7919)) % VOCABULARY.length];
      return i === 0 ? word : ` ${word}`;
    };
    const usage = () => ({
      prompt_tokens: parsed.promptTokens,
      total_tokens: parsed.promptTokens + generated,
      completion_tokens: generated,
    });
    const head = { id, object: "", created: this.options.created, model: this.options.model };
    try {
      if (!slot) return;
      if (parsed.stream) {
        res.writeHead(200, {
          "content-type": "text/event-stream; charset=utf-8",
          "cache-control": "no-cache",
          "x-request-id": base,
        });
        const write = async (payload: unknown): Promise<void> => {
          if (gone.signal.aborted) return;
          if (!res.write(sseEvent(JSON.stringify(payload)))) {
            await Promise.race([once(res, "drain").catch(() => undefined), goneP]);
          }
        };
        const object = chat ? "chat.completion.chunk" : "text_completion";
        if (chat) {
          await write({
            ...head,
            object,
            choices: [
              { index: 0, delta: { role: "assistant", content: "" }, logprobs: null, finish_reason: null },
            ],
          });
        }
        await this.#sleep(this.options.ttftMs, gone.signal);
        for (let i = 0; i < n && !gone.signal.aborted; i++) {
          if (i > 0) await this.#pace(i, gone.signal);
          if (gone.signal.aborted) break;
          generated++;
          this.#stats.generationTokens++;
          const last = i === n - 1 ? finishReason : null;
          const choice = chat
            ? { index: 0, delta: { content: token(i) }, logprobs: null, finish_reason: last }
            : { index: 0, text: token(i), logprobs: null, finish_reason: last, stop_reason: null };
          await write({ ...head, object, choices: [choice] });
        }
        if (!gone.signal.aborted && parsed.includeUsage)
          await write({ ...head, object, choices: [], usage: usage() });
        if (!gone.signal.aborted) {
          res.end(sseEvent("[DONE]"));
          await Promise.race([once(res, "finish").catch(() => undefined), goneP]);
        }
      } else {
        await this.#sleep(this.options.ttftMs, gone.signal);
        let text = "";
        for (let i = 0; i < n && !gone.signal.aborted; i++) {
          if (i > 0) await this.#pace(i, gone.signal);
          text += token(i);
          generated++;
          this.#stats.generationTokens++;
        }
        if (!gone.signal.aborted) {
          const choice = chat
            ? {
                index: 0,
                message: { role: "assistant", content: text },
                logprobs: null,
                finish_reason: finishReason,
                stop_reason: null,
              }
            : { index: 0, text, logprobs: null, finish_reason: finishReason, stop_reason: null };
          const body = Buffer.from(
            JSON.stringify({
              ...head,
              object: chat ? "chat.completion" : "text_completion",
              choices: [choice],
              usage: usage(),
            }),
          );
          res.writeHead(200, {
            "content-type": "application/json",
            "content-length": body.length,
            "x-request-id": base,
          });
          res.end(body);
        }
      }
    } finally {
      if (slot) this.#release();
      if (gone.signal.aborted) {
        this.#stats.aborts++;
        record.outcome = "aborted";
      } else {
        this.#stats.completed++;
        record.outcome = "completed";
      }
    }
  }

  /** A generation slot (--max-num-seqs): true when granted, false when the client left while waiting. */
  async #acquire(signal: AbortSignal): Promise<boolean> {
    if (this.#stats.running < this.options.maxNumSeqs) {
      this.#stats.running++;
      return true;
    }
    this.#stats.waiting++;
    const granted = await new Promise<boolean>((resolve) => {
      const grant = () => {
        signal.removeEventListener("abort", leave);
        resolve(true);
      };
      const leave = () => {
        this.#queue.splice(this.#queue.indexOf(grant), 1);
        resolve(false);
      };
      this.#queue.push(grant);
      signal.addEventListener("abort", leave, { once: true });
    });
    this.#stats.waiting--;
    return granted;
  }

  /** Hand the slot to the next waiting request (it stays counted as running), or free it. */
  #release(): void {
    const next = this.#queue.shift();
    if (next) next();
    else this.#stats.running--;
  }

  /** Wait the inter-token latency; with 0, yield to other connections every 64 tokens only. */
  async #pace(i: number, signal: AbortSignal): Promise<void> {
    if (this.options.itlMs > 0) await this.#sleep(this.options.itlMs, signal);
    else if (i % 64 === 0) await new Promise<void>((resolve) => setImmediate(resolve));
  }
}
