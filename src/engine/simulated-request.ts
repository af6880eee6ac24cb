/**
 * @module The simulated engine's request parsing: a completion or chat
 * completion body checked as `vllm serve` checks it (its pydantic
 * validators, its context-length check), failing with vLLM's status, error
 * type and words. Every fact imitated here is a row of
 * tests/fixtures/vllm/contract.md.
 */

/** vLLM's error types; "Bad Request" is what its request-validation handler writes (HTTPStatus phrase). */
export type ErrorType =
  | "Bad Request"
  | "BadRequestError"
  | "NotFoundError"
  | "ServiceUnavailableError"
  | "InternalServerError";

export function openAiError(message: string, type: ErrorType, code: number, param: string | null = null) {
  return { error: { message, type, param, code } };
}

/** A request vLLM refuses: answered with this status and vLLM's error body. */
export class RequestError extends Error {
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

export interface ParsedCompletion {
  chat: boolean;
  stream: boolean;
  includeUsage: boolean;
  promptText: string;
  promptTokens: number;
  maxTokens: number | undefined;
  ignoreEos: boolean;
  cacheSalt: string | null;
}

/** What the served model allows: its name (requests may name it or none) and its context length. */
export interface ServedModel {
  model: string;
  maxModelLen: number;
}

type Body = Record<string, unknown>;

/** Python truthiness of a JSON value, for vLLM's `data.get(...)` checks. */
function pyTruthy(value: unknown): boolean {
  if (value === undefined || value === null || value === false || value === 0 || value === "") return false;
  if (Array.isArray(value)) return value.length > 0;
  if (typeof value === "object") return Object.keys(value).length > 0;
  return true;
}

/** Words counted as tokens: a deterministic stand-in for a tokenizer. */
function countWords(text: string): number {
  return text.split(/\s+/).filter(Boolean).length;
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

function jsonObject(raw: Buffer): Body {
  let body: unknown;
  try {
    body = JSON.parse(raw.toString("utf8"));
  } catch (err) {
    throw new RequestError(400, "BadRequestError", `the body is not JSON: ${(err as Error).message}`);
  }
  if (body === null || typeof body !== "object" || Array.isArray(body)) {
    throw new RequestError(400, "BadRequestError", "the body must be a JSON object");
  }
  return body as Body;
}

/**
 * vLLM's request validators (pydantic, before the handler runs): its
 * validation handler answers 400 "Bad Request" with the validator's message
 * ("Value error, ..." inside a dump of the request).
 */
function checkFields(b: Body): void {
  if (pyTruthy(b.stream_options) && !pyTruthy(b.stream)) {
    throw new RequestError(
      400,
      "Bad Request",
      "Value error, Stream options can only be defined when `stream=True`. (parameter=stream_options)",
      "stream_options",
    );
  }
  if (
    "cache_salt" in b &&
    b.cache_salt !== null &&
    (typeof b.cache_salt !== "string" || b.cache_salt === "")
  ) {
    throw new RequestError(
      400,
      "Bad Request",
      "Value error, Parameter 'cache_salt' must be a non-empty string if provided.",
    );
  }
  const so = b.stream_options;
  if (so !== undefined && so !== null && (typeof so !== "object" || Array.isArray(so))) {
    throw new RequestError(400, "Bad Request", "stream_options: Input should be a valid dictionary");
  }
  if (b.model !== undefined && b.model !== null && typeof b.model !== "string") {
    throw new RequestError(400, "Bad Request", "model: Input should be a valid string");
  }
}

/** vLLM serves a request without a model (or with an empty one) on its base model. */
function checkModel(b: Body, served: string): void {
  if (typeof b.model === "string" && b.model !== "" && b.model !== served) {
    throw new RequestError(404, "NotFoundError", `The model \`${b.model}\` does not exist.`, "model");
  }
}

function promptOf(b: Body, chat: boolean): string {
  if (chat) {
    if (!Array.isArray(b.messages) || b.messages.length === 0) {
      throw new RequestError(400, "BadRequestError", "'messages' must be a non-empty array", "messages");
    }
    return b.messages
      .map(
        (m) =>
          `${String((m as { role?: unknown })?.role)}: ${textOfContent((m as { content?: unknown })?.content)}`,
      )
      .join("\n");
  }
  if (typeof b.prompt === "string") return b.prompt;
  if (Array.isArray(b.prompt) && b.prompt.every((p) => typeof p === "string")) return b.prompt.join("\n");
  throw new RequestError(
    400,
    "BadRequestError",
    "'prompt' must be a string or an array of strings",
    "prompt",
  );
}

function maxTokensOf(b: Body, chat: boolean): number | undefined {
  const rawMax = chat ? (b.max_completion_tokens ?? b.max_tokens) : b.max_tokens;
  if (rawMax === undefined || rawMax === null) return undefined;
  if (typeof rawMax !== "number" || !Number.isInteger(rawMax) || rawMax < 1) {
    throw new RequestError(
      400,
      "BadRequestError",
      "max_tokens must be an integer of at least 1",
      "max_tokens",
    );
  }
  return rawMax;
}

/** vLLM's StreamOptions.include_usage defaults to true: `{}` asks for the usage chunk, null/false do not. */
function includeUsageOf(b: Body): boolean {
  const so = b.stream_options as { include_usage?: unknown } | null | undefined;
  if (so === undefined || so === null) return false;
  return so.include_usage === undefined || so.include_usage === true;
}

/** vLLM's context-length check (`_validate_input`), with its words: see tests/fixtures/vllm/contract.md. */
function checkContextLength(promptTokens: number, maxTokens: number | undefined, len: number): void {
  if (promptTokens >= len) {
    throw new RequestError(
      400,
      "BadRequestError",
      `This model's maximum context length is ${len} tokens. However, your request has ` +
        `${promptTokens} input tokens. Please reduce the length of the input messages. ` +
        `(parameter=input_tokens, value=${promptTokens})`,
      "input_tokens",
    );
  }
  if (maxTokens !== undefined && promptTokens + maxTokens > len) {
    throw new RequestError(
      400,
      "BadRequestError",
      `'max_tokens' or 'max_completion_tokens' is too large: ${maxTokens}. This model's maximum ` +
        `context length is ${len} tokens and your request has ${promptTokens} input tokens ` +
        `(${maxTokens} > ${len} - ${promptTokens}). (parameter=max_tokens, value=${maxTokens})`,
      "max_tokens",
    );
  }
}

/** A /v1/completions (chat = false) or /v1/chat/completions body, checked in vLLM's order. */
export function parseCompletionRequest(raw: Buffer, chat: boolean, served: ServedModel): ParsedCompletion {
  const b = jsonObject(raw);
  checkFields(b);
  checkModel(b, served.model);
  const promptText = promptOf(b, chat);
  const maxTokens = maxTokensOf(b, chat);
  const promptTokens = Math.max(1, countWords(promptText));
  checkContextLength(promptTokens, maxTokens, served.maxModelLen);
  return {
    chat,
    stream: b.stream === true,
    includeUsage: includeUsageOf(b),
    promptText,
    promptTokens,
    maxTokens,
    ignoreEos: b.ignore_eos === true,
    cacheSalt: typeof b.cache_salt === "string" ? b.cache_salt : null,
  };
}
