/**
 * Attack: make the router and the engine read two different values from
 * one request body. The router no longer parses a body into objects (it
 * scans the bytes for `model` and `stream`), and the node writes the
 * tenant's `cache_salt` after the client's bytes instead of rebuilding the
 * object; a scan that took the first of two `model` fields, or missed a
 * field whose name is written with escapes (`"mod\u0065l"`), would route by
 * one model while the engine serves another, and a client's own
 * `cache_salt` left in the body could become the one the engine keeps. All
 * real parts: the router service, CURVE ZeroMQ, a node relaying to a
 * simulated engine over loopback HTTP, which records the salt each request
 * arrived with (parsed the way vLLM's parser does: the last field wins).
 */
import assert from "node:assert/strict";
import { after, before, describe, test } from "node:test";
import { Secret } from "../../src/core/secret.ts";
import { cacheSalt } from "../../src/engine/cache-salt.ts";
import { post, Stack, type StackNode } from "../helpers/stack.ts";

const MESSAGES = '"messages":[{"role":"user","content":"hi"}]';

describe("request bodies: the router and the engine read the same fields", { timeout: 120_000 }, () => {
  let stack: Stack;
  let node: StackNode;
  let key: string;

  before(async () => {
    stack = await Stack.start();
    node = await stack.addNode({});
    key = stack.apiKey("default", "acme");
  });
  after(() => stack?.close());

  const send = (body: string) =>
    post(stack.url, "/v1/chat/completions", body, { authorization: `Bearer ${key}` });

  test("a client's own cache_salt never reaches the engine, however its name is written", async () => {
    // The stack's nodes run with XEROTIER_AGENT_VLLM_SALT_SECRET=test-secret-for-relay-tests (tests/helpers/stack.ts).
    const ours = cacheSalt({ project: "default", tenant: "acme" }, new Secret("test-secret-for-relay-tests"));
    for (const body of [
      `{"model":"sim-model",${MESSAGES},"cache_salt":"evil"}`,
      `{"cache_salt":"evil","model":"sim-model",${MESSAGES}}`,
      `{"model":"sim-model",${MESSAGES},"cache_s\\u0061lt":"evil","cache_salt":"evil2"}`,
    ]) {
      const r = await send(body);
      assert.equal(r.status, 200, r.body.toString());
      const id = String(r.headers["x-request-id"]);
      const record = node.engine.server.stats().lastRequests.find((x) => x.requestId === id);
      assert.equal(record?.cacheSalt, ours, body);
    }
  });

  test("of two model fields the router routes by the last, as the engine reads it, escaped names included", async () => {
    const served = await send(`{"model":"not-served","mod\\u0065l":"sim-model",${MESSAGES}}`);
    assert.equal(served.status, 200, served.body.toString());
    const refused = await send(`{"model":"sim-model",${MESSAGES},"model":"not-served"}`);
    assert.equal(refused.status, 404, refused.body.toString());
    assert.match(refused.body.toString(), /not-served/);
  });

  test("a body that is not one JSON object is refused by the router with a 400 naming the byte", async () => {
    for (const [body, code] of [
      [`{"model":"sim-model",${MESSAGES}} {"cache_salt":"evil"}`, "invalid_json"],
      [`[{"model":"sim-model"}]`, "invalid_request"],
      [`{"model":"sim-model",${MESSAGES},"x":"\u0001"}`, "invalid_json"],
    ]) {
      const r = await send(body);
      assert.equal(r.status, 400, body);
      const error = JSON.parse(r.body.toString()).error;
      assert.equal(error.code, code, body);
      assert.match(error.message, /at byte \d+/, body);
    }
  });
});
