import assert from "node:assert/strict";
import { createHmac } from "node:crypto";
import { after, before, describe, test } from "node:test";
import { DEFAULT_SALT_SECRET } from "../../src/core/config/schema.ts";
import { isXimError } from "../../src/core/errors.ts";
import { Secret } from "../../src/core/secret.ts";
import { cacheSalt, isDefaultSaltSecret, saltedEngineBody } from "../../src/engine/cache-salt.ts";
import { SimulatedEngine } from "../../src/engine/simulated-engine.ts";
import { ssePayloads } from "../../src/engine/sse.ts";
import { collect, debugState, WAIT_MS } from "./engine.case.ts";

const secret = new Secret("a-unique-production-secret");
const A = { project: "proj", tenant: "tenant-a" };
const B = { project: "proj", tenant: "tenant-b" };

describe("tenant cache salts", () => {
  test("two tenants get different salts", () => {
    assert.notEqual(cacheSalt(A, secret), cacheSalt(B, secret));
  });

  test("one tenant of one project always gets the same salt: the HMAC-SHA256 of [project, tenant] under the secret, in hex", () => {
    const salt = cacheSalt(A, secret);
    assert.equal(salt, cacheSalt({ ...A }, new Secret("a-unique-production-secret")));
    assert.equal(
      salt,
      createHmac("sha256", "a-unique-production-secret").update('["proj","tenant-a"]').digest("hex"),
    );
    assert.match(salt, /^[0-9a-f]{64}$/);
  });

  test("one tenant name in two projects gets two salts, and the pair cannot be shifted between its parts", () => {
    assert.notEqual(
      cacheSalt({ project: "p1", tenant: "acme" }, secret),
      cacheSalt({ project: "p2", tenant: "acme" }, secret),
    );
    assert.notEqual(
      cacheSalt({ project: "a", tenant: "b-c" }, secret),
      cacheSalt({ project: "a-b", tenant: "c" }, secret),
    );
  });

  test("another secret gives another salt to the same tenant", () => {
    assert.notEqual(cacheSalt(A, secret), cacheSalt(A, new Secret("other")));
  });

  test("a request without a tenant or a project is refused rather than sharing an unsalted cache", () => {
    for (const scope of [
      { project: "proj", tenant: "" },
      { project: "", tenant: "tenant-a" },
    ])
      assert.throws(
        () => cacheSalt(scope, secret),
        (err: unknown) => isXimError(err) && err.code === "XIM_TENANT_MISSING",
      );
  });

  /** The engine body for a client body given as JSON text, read back as an object. */
  const salted = (text: string, scope = A) => {
    const out = Buffer.concat(saltedEngineBody(Buffer.from(text), scope, secret));
    return { text: out.toString("utf8"), body: JSON.parse(out.toString("utf8")) as Record<string, unknown> };
  };

  test("the engine body is the client's bytes with the tenant's cache_salt written last", () => {
    const client = '{"model":"m","messages":[],"temperature":0.2 }';
    const { text, body } = salted(client);
    assert.equal(
      text,
      `{"model":"m","messages":[],"temperature":0.2 ,"cache_salt":"${cacheSalt(A, secret)}"}`,
    );
    assert.deepEqual(body, { model: "m", messages: [], temperature: 0.2, cache_salt: cacheSalt(A, secret) });
    assert.equal(salted(" {} ").text, ` {"cache_salt":"${cacheSalt(A, secret)}"}`);
  });

  test("a client's cache_salt is cut out of the bytes, wherever and however often it is written", () => {
    const ours = cacheSalt(A, secret);
    for (const client of [
      '{"cache_salt":"evil","model":"m"}',
      '{"model":"m","cache_salt":"evil"}',
      '{"model":"m", "cache_salt" : "evil", "cache_salt":"evil2", "n":1}',
      '{"cache_salt":"evil"}',
      '{"cache_s\u0061lt":"evil","model":"m"}',
    ]) {
      const { text, body } = salted(client);
      assert.ok(!text.includes("evil"), `${client} -> ${text}`);
      assert.equal(body.cache_salt, ours, client);
      assert.equal(text.match(/cache_salt/g)?.length, 1, text);
    }
    assert.deepEqual(salted('{"model":"m", "cache_salt" : "evil", "n":1}').body, {
      model: "m",
      n: 1,
      cache_salt: ours,
    });
  });

  test("bytes that are not one JSON object are refused with XIM_BAD_REQUEST_BODY naming the fault", () => {
    for (const text of ["[1]", '{"model":"m"', '{"model":"m"} {"cache_salt":"x"}', ""]) {
      assert.throws(
        () => saltedEngineBody(Buffer.from(text), A, secret),
        (err: unknown) =>
          isXimError(err) &&
          err.code === "XIM_BAD_REQUEST_BODY" &&
          /must be a JSON object .*: (expected|unexpected)/.test(err.message),
        text,
      );
    }
  });

  test("the built-in secret is detected so the node can warn at start-up", () => {
    assert.equal(isDefaultSaltSecret({ vllmSaltSecret: new Secret(DEFAULT_SALT_SECRET) }), true);
    assert.equal(isDefaultSaltSecret({ vllmSaltSecret: secret }), false);
  });
});

describe("salts at the engine", { timeout: 60_000 }, () => {
  const engine = new SimulatedEngine({ model: "m", outputTokens: 2 });
  before(async () => {
    await engine.start();
    await engine.waitReady(AbortSignal.timeout(WAIT_MS));
  });
  after(() => engine.stop(1000));

  function send(scope: typeof A, clientBody: Record<string, unknown>) {
    return collect(
      ssePayloads(
        engine.stream({
          path: "/v1/chat/completions",
          // The bytes go as they are: a streamed request says so itself, as the router requires.
          body: saltedEngineBody(Buffer.from(JSON.stringify({ ...clientBody, stream: true })), scope, secret),
        }),
      ),
    );
  }

  test("a client's cache_salt never reaches the engine; the tenant's salt does", async () => {
    const evil = cacheSalt(B, secret);
    await send(A, { model: "m", messages: [{ role: "user", content: "hi" }], cache_salt: evil });
    await send(A, { model: "m", messages: [{ role: "user", content: "hi" }], cache_salt: "guess" });
    const state = await debugState(engine);
    assert.deepEqual(state.lastSalts.slice(-2), [cacheSalt(A, secret), cacheSalt(A, secret)]);
    assert.ok(!state.lastSalts.includes("guess"));
    assert.ok(!state.lastSalts.includes(evil), "a client cannot borrow another tenant's salt");
  });

  test("two tenants' requests arrive at the engine with two different salts", async () => {
    await send(A, { model: "m", messages: [{ role: "user", content: "same prompt" }] });
    await send(B, { model: "m", messages: [{ role: "user", content: "same prompt" }] });
    const [a, b] = (await debugState(engine)).lastSalts.slice(-2);
    assert.equal(a, cacheSalt(A, secret));
    assert.equal(b, cacheSalt(B, secret));
    assert.notEqual(a, b);
  });
});
