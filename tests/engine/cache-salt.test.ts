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

describe("tenant cache salts", () => {
  test("two tenants get different salts", () => {
    assert.notEqual(cacheSalt("tenant-a", secret), cacheSalt("tenant-b", secret));
  });

  test("one tenant always gets the same salt: the HMAC-SHA256 of the tenant under the secret, in hex", () => {
    const salt = cacheSalt("tenant-a", secret);
    assert.equal(salt, cacheSalt("tenant-a", new Secret("a-unique-production-secret")));
    assert.equal(salt, createHmac("sha256", "a-unique-production-secret").update("tenant-a").digest("hex"));
    assert.match(salt, /^[0-9a-f]{64}$/);
  });

  test("another secret gives another salt to the same tenant", () => {
    assert.notEqual(cacheSalt("tenant-a", secret), cacheSalt("tenant-a", new Secret("other")));
  });

  test("a request without a tenant is refused rather than sharing an unsalted cache", () => {
    assert.throws(
      () => cacheSalt("", secret),
      (err: unknown) => isXimError(err) && err.code === "XIM_TENANT_MISSING",
    );
  });

  test("the engine body drops the client's cache_salt, sets the tenant's, and leaves the client's object alone", () => {
    const client = { model: "m", messages: [], cache_salt: "chosen-by-client", temperature: 0.2 };
    const body = saltedEngineBody(client, "tenant-a", secret);
    assert.deepEqual(body, {
      model: "m",
      messages: [],
      temperature: 0.2,
      cache_salt: cacheSalt("tenant-a", secret),
    });
    assert.equal(client.cache_salt, "chosen-by-client");
    assert.throws(() => saltedEngineBody([1], "tenant-a", secret), /must be a JSON object/);
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

  function send(tenant: string, clientBody: Record<string, unknown>) {
    return collect(
      ssePayloads(
        engine.stream({ path: "/v1/chat/completions", body: saltedEngineBody(clientBody, tenant, secret) }),
      ),
    );
  }

  test("a client's cache_salt never reaches the engine; the tenant's salt does", async () => {
    const evil = cacheSalt("tenant-b", secret);
    await send("tenant-a", { model: "m", messages: [{ role: "user", content: "hi" }], cache_salt: evil });
    await send("tenant-a", { model: "m", messages: [{ role: "user", content: "hi" }], cache_salt: "guess" });
    const state = await debugState(engine);
    assert.deepEqual(state.lastSalts.slice(-2), [
      cacheSalt("tenant-a", secret),
      cacheSalt("tenant-a", secret),
    ]);
    assert.ok(!state.lastSalts.includes("guess"));
    assert.ok(!state.lastSalts.includes(evil), "a client cannot borrow another tenant's salt");
  });

  test("two tenants' requests arrive at the engine with two different salts", async () => {
    await send("tenant-a", { model: "m", messages: [{ role: "user", content: "same prompt" }] });
    await send("tenant-b", { model: "m", messages: [{ role: "user", content: "same prompt" }] });
    const [a, b] = (await debugState(engine)).lastSalts.slice(-2);
    assert.equal(a, cacheSalt("tenant-a", secret));
    assert.equal(b, cacheSalt("tenant-b", secret));
    assert.notEqual(a, b);
  });
});
