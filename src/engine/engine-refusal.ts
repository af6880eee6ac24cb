/**
 * @module What a client is told of an engine's refusal (a non-2xx answer
 * to a request): the HTTP status and the string code it gets, by the
 * engine's status. The router answers with them (router/openai-errors.ts)
 * and the node counts the refusal by the same rule (agent/relay.ts), so
 * both sides' request metrics agree on whose error it was.
 */

/**
 * The client's status and code for an engine's status. A 401/403/405/409/429
 * from the engine is not about the client (the node holds the engine's key
 * and chooses the route; the engine's limits are the node's, not the
 * client's), so it becomes a 502 or 503 the client may retry.
 */
export function engineRefusalAnswer(status: number): { status: number; code: string } {
  switch (status) {
    case 400:
    case 422:
      return { status, code: "invalid_request" };
    case 404:
      return { status, code: "model_not_found" };
    case 408:
      return { status, code: "request_timeout" };
    case 413:
      return { status, code: "request_too_large" };
    case 429:
      return { status: 503, code: "engine_overloaded" };
    case 503:
      return { status, code: "engine_unavailable" };
  }
  if (status >= 500 && status <= 599) return { status, code: "engine_error" };
  return { status: 502, code: "engine_error" };
}

/** The request metric's outcome of an engine answer with this status, on the node. */
export function engineAnswerOutcome(status: number): "ok" | "client_error" | "engine_error" {
  if (status >= 200 && status < 300) return "ok";
  return engineRefusalAnswer(status).status < 500 ? "client_error" : "engine_error";
}
