/**
 * @module The simulated engine: an OpenAI-compatible HTTP server with the
 * contract of `vllm serve`, for tests, the demo and benchmarks where no GPU
 * exists. It is a test double, so it fails where vLLM fails; every vLLM fact
 * it imitates is a row of tests/fixtures/vllm/contract.md (with the vLLM
 * file@commit it came from), checked by tests/engine/contract.test.ts.
 *
 * - Readiness: real vLLM binds its port but does not listen() until the
 *   engine is built, so connects are refused (ECONNREFUSED) while loading
 *   (research vllm.md §7). Node cannot bind without listening, so this
 *   server listens at once (a caller learns its port, and no other process
 *   can take it) and, until the load time has passed, accepts every
 *   connection and resets it at once (TCP RST; a Unix socket is closed): the
 *   client gets ECONNRESET or "socket hang up" instead of ECONNREFUSED, on
 *   every connection, with no request answered. A caller that treats any
 *   connection failure as "not ready yet" (the supervisor does) sees the same
 *   as with vLLM. `loading503` keeps the older behaviour (/health and API
 *   paths answer 503 while loading) for a test that wants an HTTP answer.
 * - /v1/models, /v1/completions, /v1/chat/completions with and without
 *   `stream`; SSE `data: {...}\n\n` chunks ending in `data: [DONE]\n\n`;
 *   a usage chunk when `stream_options` is given and its `include_usage` is
 *   not false/null (vLLM's default is true); `stream_options` without
 *   `stream` is vLLM's 400.
 * - Context length: prompt words count as tokens; a prompt of max_model_len
 *   tokens or more, or prompt + max_tokens over it, is vLLM's 400 with its
 *   words. A missing `model` means the served one; another name is a 404.
 * - `failMidStreamAfter` (`--fail-mid-stream-after N`): every request that
 *   would generate more than N tokens fails after N of them as vLLM does when
 *   a request fails in the engine: a stream ends with vLLM's error event
 *   (`data: {"error": {...}}\n\n`) then `data: [DONE]\n\n`; a non-streamed
 *   request gets vLLM's 500. A server option rather than a request field,
 *   so the request surface stays exactly vLLM's (a client behind a router
 *   cannot make the engine fail).
 * - Deterministic output: the text is a function of the prompt, and the
 *   `id` of the X-Request-Id header (else of the prompt); `created` is fixed
 *   per server. So the same request gives the same bytes (cache_salt does
 *   not change the output).
 * - Abort: a client that disconnects before the response ends stops the
 *   generation and is counted.
 * - cache_salt: validated as vLLM does (non-empty string), counted per salt
 *   hash in GET /metrics, and the raw salts of recent requests are in
 *   GET /debug/state (a test hook vLLM does not have).
 * - /metrics: vLLM's gauge names and labels (`model_name`, `engine="0"`),
 *   plus `xim_sim_*` counters.
 * - Errors use vLLM's shape: {"error":{"message","type","param","code"}}.
 */
import { createHash, timingSafeEqual } from "node:crypto";
import { once } from "node:events";
import { createServer, type IncomingMessage, type Server, type ServerResponse } from "node:http";
import type { AddressInfo, Socket } from "node:net";
import { sleep as realSleep, type Sleep } from "../core/backoff.ts";
import {
  openAiError,
  type ParsedCompletion,
  parseCompletionRequest,
  RequestError,
} from "./simulated-request.ts";
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
  /** While loading, answer 503 on /health and API paths instead of resetting every connection. */
  loading503?: boolean;
  /** Fail every request after this many generated tokens, as vLLM does when a request fails in the engine. */
  failMidStreamAfter?: number;
  /** `created` of every response, epoch seconds; defaults to the server's creation time. */
  created?: number;
  /**
   * Not vLLM's: each streamed event carries `xim_sent_mono_ms`, the
   * host's monotonic clock (ms since boot, shared by every process) when
   * it was written, so the benchmark can tell how late each chunk reaches
   * its client through a relay (bench/README.md, chunk lag).
   */
  stampChunks?: boolean;
  /**
   * As vLLM's --api-key / VLLM_API_KEY: /v1 paths answer 401
   * {"error":"Unauthorized"} without `Authorization: Bearer <key>`;
   * /health and /metrics stay open. Unset: no key is asked for.
   */
  apiKey?: string;
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
  outcome: "running" | "completed" | "aborted" | "failed";
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

/**
 * vLLM's error event when a request fails mid-stream (GenerationError):
 * `json.dumps` of its ErrorResponse, so Python's separators (", " and ": "),
 * then the usual `data: [DONE]`. Source: tests/fixtures/vllm/contract.md.
 */
export const MID_STREAM_ERROR_EVENT =
  'data: {"error": {"message": "Internal server error", "type": "InternalServerError", "param": null, "code": 500}}\n\n';

function sha256(text: string | Buffer): Buffer {
  return createHash("sha256").update(text).digest();
}

/** The word generated at position i of a completion: a function of the prompt's hash. */
function tokenAt(promptHash: Buffer, i: number): string {
  const word = VOCABULARY[(promptHash.readUInt16BE((i * 2) % 30) ^ (i * 7919)) % VOCABULARY.length];
  return i === 0 ? word : ` ${word}`;
}

/** One completion being generated: what was asked, what will happen, and how far it got. */
interface Generation {
  parsed: ParsedCompletion;
  /** X-Request-Id, else a hash of the prompt: the response id's suffix and the record's id. */
  requestId: string;
  /** The fields every response object or chunk starts with. */
  head: { id: string; object: string; created: number; model: string };
  promptHash: Buffer;
  /** Tokens the request asks for. */
  n: number;
  /** Tokens generated before the end (fewer than n when it fails mid-stream). */
  count: number;
  fails: boolean;
  finishReason: "length" | "stop";
  generated: number;
}

function planGeneration(
  parsed: ParsedCompletion,
  requestIdHeader: string | string[] | undefined,
  options: SimulatedEngineServer["options"],
): Generation {
  const promptHash = sha256(`${parsed.chat ? "chat" : "completion"}\n${parsed.promptText}`);
  const requestId =
    typeof requestIdHeader === "string" && requestIdHeader.length > 0
      ? requestIdHeader
      : promptHash.toString("hex").slice(0, 32);
  const n =
    parsed.ignoreEos && parsed.maxTokens !== undefined
      ? parsed.maxTokens
      : Math.min(options.outputTokens, parsed.maxTokens ?? Number.POSITIVE_INFINITY);
  // With failMidStreamAfter, a request that would generate more tokens fails after that many.
  const failAfter = options.failMidStreamAfter;
  const fails = failAfter !== undefined && n > failAfter;
  return {
    parsed,
    requestId,
    head: {
      id: `${parsed.chat ? "chatcmpl" : "cmpl"}-${requestId}`,
      object: "",
      created: options.created,
      model: options.model,
    },
    promptHash,
    n,
    count: fails ? failAfter : n,
    fails,
    finishReason: n === parsed.maxTokens ? "length" : "stop",
    generated: 0,
  };
}

function usageOf(g: Generation) {
  return {
    prompt_tokens: g.parsed.promptTokens,
    total_tokens: g.parsed.promptTokens + g.generated,
    completion_tokens: g.generated,
  };
}

/** The client's disconnect, as a signal (and a promise) that aborts the generation, as vLLM's does. */
interface ClientGone {
  signal: AbortSignal;
  gone: Promise<void>;
}

function watchClient(res: ServerResponse): ClientGone {
  const controller = new AbortController();
  const gone = new Promise<void>((resolve) =>
    controller.signal.addEventListener("abort", () => resolve(), { once: true }),
  );
  res.once("close", () => {
    if (!res.writableFinished) controller.abort();
  });
  return { signal: controller.signal, gone };
}

/** The host's monotonic clock in ms (CLOCK_MONOTONIC: the same in every process of the host). */
function monotonicMs(): number {
  return Number(process.hrtime.bigint()) / 1e6;
}

export class SimulatedEngineServer {
  readonly options: Required<
    Omit<
      SimulatedEngineOptions,
      "root" | "sleep" | "unhealthyAfterMs" | "apiKey" | "failMidStreamAfter" | "stampChunks"
    >
  > & {
    root: string;
    unhealthyAfterMs: number | undefined;
    failMidStreamAfter: number | undefined;
    stampChunks: boolean;
  };
  readonly #sleep: Sleep;
  /** SHA-256 of the API key, compared in constant time as vLLM does; undefined: no key. */
  readonly #keyDigest: Buffer | undefined;
  readonly #server: Server;
  #ready = false;
  #dead = false;
  #unixSocket = false;
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
  #sockets = new Set<Socket>();

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
      loading503: options.loading503 ?? false,
      failMidStreamAfter: options.failMidStreamAfter,
      stampChunks: options.stampChunks ?? false,
      created: options.created ?? Math.floor(Date.now() / 1000),
    };
    this.#sleep = options.sleep ?? realSleep;
    this.#keyDigest = options.apiKey ? sha256(options.apiKey) : undefined;
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
    // While loading, vLLM's port refuses connections; the nearest a listening server can do is reset each one.
    this.#server.prependListener("connection", (s: Socket) => {
      if (this.#ready || this.options.loading503) return;
      if (this.#unixSocket) s.destroy();
      else s.resetAndDestroy();
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
    this.#unixSocket = typeof port === "string";
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
    // vLLM labels its gauges with the served name and the engine index (one engine here: "0").
    const labels = `model_name=${JSON.stringify(this.options.model)},engine="0"`;
    const lines = [
      "# HELP vllm:num_requests_running Requests being generated.",
      "# TYPE vllm:num_requests_running gauge",
      `vllm:num_requests_running{${labels}} ${s.running}`,
      "# HELP vllm:num_requests_waiting Requests waiting for a slot (--max-num-seqs).",
      "# TYPE vllm:num_requests_waiting gauge",
      `vllm:num_requests_waiting{${labels}} ${s.waiting}`,
      // The simulator holds no KV cache: each running request counts as one slot of --max-num-seqs, and
      // nothing is ever preempted (the node's kv_cache_exhausted reads these two names).
      "# HELP vllm:kv_cache_usage_perc KV-cache usage. 1 means 100 percent usage.",
      "# TYPE vllm:kv_cache_usage_perc gauge",
      `vllm:kv_cache_usage_perc{${labels}} ${Number.isFinite(this.options.maxNumSeqs) ? Math.min(1, s.running / this.options.maxNumSeqs) : 0}`,
      "# HELP vllm:num_preemptions_total Cumulative number of preemptions from the engine.",
      "# TYPE vllm:num_preemptions_total counter",
      `vllm:num_preemptions_total{${labels}} 0`,
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

  #authorized(req: IncomingMessage): boolean {
    if (!this.#keyDigest) return true;
    const header = req.headers.authorization ?? "";
    if (!header.startsWith("Bearer ")) return false;
    return timingSafeEqual(sha256(header.slice("Bearer ".length)), this.#keyDigest);
  }

  /** The paths outside /v1 (no API key asked): true when `path` was one of them and is answered. */
  #openPath(path: string, res: ServerResponse): boolean {
    if (path === "/health") {
      res.writeHead(this.#ready && !this.#dead ? 200 : 503, { "content-length": 0 });
      res.end();
    } else if (path === "/metrics") {
      res.writeHead(200, { "content-type": "text/plain; version=0.0.4; charset=utf-8" });
      res.end(this.metrics());
    } else if (path === "/debug/state") {
      this.#json(res, 200, this.stats());
    } else return false;
    return true;
  }

  async #handle(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const path = (req.url ?? "/").split("?")[0];
    const method = req.method ?? "GET";
    if (method === "GET" && this.#openPath(path, res)) return;
    // vLLM's AuthenticationMiddleware: before routing, on every path under /v1.
    if (path.startsWith("/v1") && !this.#authorized(req)) {
      return this.#json(res, 401, { error: "Unauthorized" });
    }
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
    let parsed: ParsedCompletion;
    try {
      parsed = parseCompletionRequest(await this.#readBody(req), chat, this.options);
    } catch (err) {
      this.#stats.errors++;
      if (err instanceof RequestError) {
        return this.#json(res, err.status, openAiError(err.message, err.type, err.status, err.param));
      }
      throw err;
    }
    const g = planGeneration(parsed, req.headers["x-request-id"], this.options);
    const record: SimulatedRequestRecord = {
      requestId: g.requestId,
      path: chat ? "/v1/chat/completions" : "/v1/completions",
      stream: parsed.stream,
      cacheSalt: parsed.cacheSalt,
      outcome: "running",
    };
    this.#record(record);
    this.#stats.requests++;
    const client = watchClient(res);
    const slot = await this.#acquire(client.signal);
    try {
      if (!slot) return;
      this.#stats.promptTokens += parsed.promptTokens;
      if (parsed.stream) await this.#streamCompletion(res, g, client);
      else await this.#answerCompletion(res, g, client.signal);
    } finally {
      if (slot) this.#release();
      record.outcome = this.#countOutcome(client.signal.aborted, g.fails);
    }
  }

  #countOutcome(aborted: boolean, failed: boolean): SimulatedRequestRecord["outcome"] {
    if (aborted) {
      this.#stats.aborts++;
      return "aborted";
    }
    if (failed) {
      this.#stats.errors++;
      return "failed";
    }
    this.#stats.completed++;
    return "completed";
  }

  /** Wait the time to first token, then generate up to g.count tokens, pacing them, until the client leaves. */
  async #generate(g: Generation, signal: AbortSignal, onToken: (i: number) => Promise<void> | void) {
    await this.#sleep(this.options.ttftMs, signal);
    for (let i = 0; i < g.count && !signal.aborted; i++) {
      if (i > 0) await this.#pace(i, signal);
      if (signal.aborted) break;
      g.generated++;
      this.#stats.generationTokens++;
      await onToken(i);
    }
  }

  /** SSE chunks as vLLM writes them, ending in its error event (on failure) or usage chunk, then [DONE]. */
  async #streamCompletion(res: ServerResponse, g: Generation, client: ClientGone): Promise<void> {
    res.writeHead(200, {
      "content-type": "text/event-stream; charset=utf-8",
      "cache-control": "no-cache",
      "x-request-id": g.requestId,
    });
    const writeBytes = async (bytes: string | Buffer): Promise<void> => {
      if (client.signal.aborted) return;
      if (!res.write(bytes)) {
        await Promise.race([once(res, "drain").catch(() => undefined), client.gone]);
      }
    };
    const stamp = this.options.stampChunks;
    const write = (payload: Record<string, unknown>) =>
      writeBytes(sseEvent(JSON.stringify(stamp ? { ...payload, xim_sent_mono_ms: monotonicMs() } : payload)));
    const chat = g.parsed.chat;
    const object = chat ? "chat.completion.chunk" : "text_completion";
    if (chat) {
      const delta = { role: "assistant", content: "" };
      await write({ ...g.head, object, choices: [{ index: 0, delta, logprobs: null, finish_reason: null }] });
    }
    await this.#generate(g, client.signal, (i) => {
      const last = !g.fails && i === g.n - 1 ? g.finishReason : null;
      const text = tokenAt(g.promptHash, i);
      const choice = chat
        ? { index: 0, delta: { content: text }, logprobs: null, finish_reason: last }
        : { index: 0, text, logprobs: null, finish_reason: last, stop_reason: null };
      return write({ ...g.head, object, choices: [choice] });
    });
    // vLLM's generator catches a failure, writes its error event (no usage chunk) and still ends with [DONE].
    if (g.fails) await writeBytes(MID_STREAM_ERROR_EVENT);
    else if (g.parsed.includeUsage) await write({ ...g.head, object, choices: [], usage: usageOf(g) });
    if (!client.signal.aborted) {
      res.end(sseEvent("[DONE]"));
      await Promise.race([once(res, "finish").catch(() => undefined), client.gone]);
    }
  }

  /** One JSON answer once every token is generated, or vLLM's 500 when the request fails in the engine. */
  async #answerCompletion(res: ServerResponse, g: Generation, signal: AbortSignal): Promise<void> {
    let text = "";
    await this.#generate(g, signal, (i) => {
      text += tokenAt(g.promptHash, i);
    });
    if (signal.aborted) return;
    if (g.fails)
      return this.#json(res, 500, openAiError("Internal server error", "InternalServerError", 500));
    const chat = g.parsed.chat;
    const finish = { logprobs: null, finish_reason: g.finishReason, stop_reason: null };
    const choice = chat
      ? { index: 0, message: { role: "assistant", content: text }, ...finish }
      : { index: 0, text, ...finish };
    const body = Buffer.from(
      JSON.stringify({
        ...g.head,
        object: chat ? "chat.completion" : "text_completion",
        choices: [choice],
        usage: usageOf(g),
      }),
    );
    res.writeHead(200, {
      "content-type": "application/json",
      "content-length": body.length,
      "x-request-id": g.requestId,
    });
    res.end(body);
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
