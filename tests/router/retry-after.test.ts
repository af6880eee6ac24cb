/**
 * The wait a 503 for capacity advises (retry-after.ts) and the
 * translation of an engine's refusal into OpenAI's shape
 * (openai-errors.ts): pure functions, driven with explicit times.
 */
import assert from "node:assert/strict";
import { describe, test } from "node:test";
import { errorTypeOf, translateEngineError } from "../../src/router/openai-errors.ts";
import { DrainRate, RETRY_AFTER_BOUNDS, retryAfterHeaders } from "../../src/router/retry-after.ts";

describe("the Retry-After of a 503 for capacity", () => {
  test("a node freeing a slot every 3 s, one request parked: retry in about 6 s", () => {
    const d = new DrainRate();
    for (let t = 0; t <= 30_000; t += 3000) d.note("n1", t);
    // 11 releases over the 30 s since the oldest: 0.37 per second; (1 parked + this one) / rate.
    assert.equal(d.retryAfterMs(["n1"], 1, 30_000), Math.ceil(2 / (11 / 30_000)));
  });

  test("two nodes drain twice as fast as one", () => {
    const d = new DrainRate();
    for (let t = 0; t <= 30_000; t += 3000) {
      d.note("n1", t);
      d.note("n2", t);
    }
    assert.equal(d.retryAfterMs(["n1", "n2"], 0, 30_000), Math.ceil(1 / (22 / 30_000)));
  });

  test("one quick release says little: a cautious wait, not a second", () => {
    const d = new DrainRate();
    d.note("n1", 0);
    assert.equal(d.retryAfterMs(["n1"], 0, 100), 10_000);
  });

  test("a fast drain is floored at a second, a slow one capped", () => {
    const fast = new DrainRate();
    for (let t = 0; t < 1000; t += 10) fast.note("n1", t);
    assert.equal(fast.retryAfterMs(["n1"], 0, 1000), RETRY_AFTER_BOUNDS.MIN_MS);
    const slow = new DrainRate();
    slow.note("n1", 0);
    assert.equal(slow.retryAfterMs(["n1"], 9, 59_000), RETRY_AFTER_BOUNDS.MAX_MS);
  });

  test("nothing freed within the last minute, or no node: the default wait", () => {
    const d = new DrainRate();
    d.note("n1", 0);
    assert.equal(d.retryAfterMs(["n1"], 0, 61_000), RETRY_AFTER_BOUNDS.UNKNOWN_MS);
    assert.equal(d.retryAfterMs([], 0, 0), RETRY_AFTER_BOUNDS.UNKNOWN_MS);
  });

  test("only the last 32 releases of a node are kept: bounded work whatever a node did", () => {
    const d = new DrainRate();
    for (let t = 0; t < 1000; t++) d.note("n1", t);
    // 32 kept (968..999), measured over the 10 s minimum span.
    assert.equal(d.perMs(["n1"], 1000), 32 / 10_000);
  });

  test("the headers: whole seconds rounded up, and the same wait in ms", () => {
    assert.deepEqual(retryAfterHeaders(2400), { "retry-after": "3", "retry-after-ms": "2400" });
    assert.deepEqual(retryAfterHeaders(10), { "retry-after": "1", "retry-after-ms": "1000" });
  });
});

describe("an engine's refusal in OpenAI's shape", () => {
  test("vLLM's nested error keeps its message and param, gets OpenAI's type and a string code", () => {
    const body = Buffer.from(
      JSON.stringify({
        error: {
          message: "max_tokens must be at least 1",
          type: "BadRequestError",
          param: "max_tokens",
          code: 400,
        },
      }),
    );
    assert.deepEqual(translateEngineError(400, body), {
      status: 400,
      code: "invalid_request",
      message: "max_tokens must be at least 1",
      param: "max_tokens",
    });
  });

  test("an older vLLM's flat error body is read the same way", () => {
    const body = Buffer.from(
      JSON.stringify({
        object: "error",
        message: "The model `x` does not exist.",
        type: "NotFoundError",
        code: 404,
      }),
    );
    assert.deepEqual(translateEngineError(404, body), {
      status: 404,
      code: "model_not_found",
      message: "The model `x` does not exist.",
      param: null,
    });
  });

  test("a body that is not JSON gets a message naming the status", () => {
    const e = translateEngineError(500, Buffer.from("<html>oops</html>"));
    assert.equal(e.status, 500);
    assert.equal(e.code, "engine_error");
    assert.match(e.message, /HTTP status 500/);
  });

  test("the engine's 401 and 429 are the node's problem: 502 and 503 for the client", () => {
    assert.equal(translateEngineError(401, Buffer.from("{}")).status, 502);
    assert.equal(translateEngineError(429, Buffer.from("{}")).status, 503);
  });

  test("OpenAI's error types by status", () => {
    assert.deepEqual([400, 401, 403, 404, 413, 429, 500, 503].map(errorTypeOf), [
      "invalid_request_error",
      "authentication_error",
      "permission_error",
      "not_found_error",
      "invalid_request_error",
      "rate_limit_error",
      "server_error",
      "server_error",
    ]);
  });
});
