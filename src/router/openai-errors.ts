/**
 * @module OpenAI's error shape, the one shape of every error a client of
 * the router sees: `{"error":{"message","type","param","code"}}` with
 * OpenAI's type names (chosen by the HTTP status) and a string code. The
 * router's own refusals are built here, and so is the translation of an
 * engine's refusal: vLLM answers `{"error":{...,"type":"BadRequestError",
 * "code":400}}` (older releases a flat `{"object":"error",...}`); the
 * client gets vLLM's message and param in OpenAI's shape instead.
 */
import { engineRefusalAnswer } from "../engine/engine-refusal.ts";

export type OpenAiErrorType =
  | "invalid_request_error"
  | "authentication_error"
  | "permission_error"
  | "not_found_error"
  | "rate_limit_error"
  | "server_error";

/** OpenAI's error type of an HTTP status. */
export function errorTypeOf(status: number): OpenAiErrorType {
  if (status === 401) return "authentication_error";
  if (status === 403) return "permission_error";
  if (status === 404) return "not_found_error";
  if (status === 429) return "rate_limit_error";
  return status < 500 ? "invalid_request_error" : "server_error";
}

/** OpenAI's error JSON. */
export function openAiErrorBody(
  status: number,
  code: string,
  message: string,
  param: string | null = null,
): string {
  return JSON.stringify({ error: { message, type: errorTypeOf(status), param, code } });
}

/** The most of an engine's error body the router holds to translate it; the rest is dropped. */
export const MAX_ENGINE_ERROR_BYTES = 64 * 1024;

/** A translated engine refusal: the status and the OpenAI-shaped body to send. */
export interface EngineErrorAnswer {
  status: number;
  code: string;
  message: string;
  param: string | null;
}

function field(o: unknown, key: string): unknown {
  return o !== null && typeof o === "object" ? (o as Record<string, unknown>)[key] : undefined;
}

/**
 * Translate an engine's non-2xx answer (its status and body bytes, at most
 * MAX_ENGINE_ERROR_BYTES of them) into OpenAI's shape, keeping the engine's
 * message and param. A body that is not JSON, or has no message, gets one
 * naming the status.
 */
export function translateEngineError(status: number, body: Buffer): EngineErrorAnswer {
  let parsed: unknown;
  try {
    parsed = JSON.parse(body.toString("utf8"));
  } catch {
    parsed = undefined;
  }
  const inner = field(parsed, "error");
  const error = inner !== null && typeof inner === "object" ? inner : parsed;
  const message = field(error, "message");
  const param = field(error, "param");
  const mapped = engineRefusalAnswer(status);
  return {
    status: mapped.status,
    code: mapped.code,
    message:
      typeof message === "string" && message !== ""
        ? message
        : `the engine refused the request with HTTP status ${status}`,
    param: typeof param === "string" ? param : null,
  };
}

/** The metric outcome of an error status the client got. */
export function errorOutcomeOf(status: number): "client_error" | "node_error" {
  return status < 500 ? "client_error" : "node_error";
}
