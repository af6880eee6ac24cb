/**
 * An enrollment cut off after the router answered (the answer lost on the
 * way: a network error, a killed CI job) is retried with the same join key:
 * the router returns the node it made then and spends no second use.
 * A real router (plain HTTP, so a TCP proxy can drop its answer) in this
 * process; the proxy forwards the request and closes the client's
 * connection as soon as the router starts to answer.
 */
import assert from "node:assert/strict";
import { existsSync } from "node:fs";
import { connect, createServer, type Server } from "node:net";
import { join } from "node:path";
import { after, before, test } from "node:test";
import { silentLogger } from "../../src/core/log.ts";
import { enroll } from "../../src/enrollment/enroll.ts";
import { loadEnrollmentState, PENDING_KEY_FILE } from "../../src/enrollment/state.ts";
import { createJoinKey } from "../../src/router/join-keys.ts";
import { type RouterService, startRouterService } from "../../src/router/service.ts";
import { cleanup, tempDir } from "../doctor/helpers.ts";

let router: RouterService;
let proxy: Server;
let proxyUrl: string;

before(async () => {
  router = await startRouterService({
    stateDir: tempDir("xim-router-"),
    enrollListen: { host: "127.0.0.1", port: 0 },
    controlBind: "tcp://127.0.0.1:0",
    streamingBind: "tcp://127.0.0.1:0",
    plainHttp: true,
    logger: silentLogger(),
  });
  const target = new URL(router.endpoints.enrollUrl);
  proxy = createServer((client) => {
    const upstream = connect(Number(target.port), target.hostname);
    client.pipe(upstream);
    // The router has committed the enrollment before its first answer byte: drop that answer.
    upstream.once("data", () => {
      client.destroy();
      upstream.destroy();
    });
    client.on("error", () => upstream.destroy());
    upstream.on("error", () => client.destroy());
  });
  await new Promise<void>((resolve) => proxy.listen(0, "127.0.0.1", resolve));
  proxyUrl = `http://127.0.0.1:${(proxy.address() as { port: number }).port}`;
});

after(async () => {
  proxy?.close();
  await router?.close();
  cleanup();
});

test("a retried enrollment whose first answer was lost returns the same node and spends one use", {
  timeout: 30_000,
}, async () => {
  const key = createJoinKey(router.store, router.identity, {
    project: "retry",
    uses: 1,
    ttlMs: null,
    labels: {},
  });
  const configDir = join(tempDir(), "xerotier");
  const common = {
    joinKey: key.key,
    allowInsecure: true,
    configDir,
    logger: silentLogger(),
    timeoutMs: 5000,
  };

  await assert.rejects(enroll({ ...common, routerUrl: proxyUrl }), "the answer never reaches the node");
  assert.equal(
    router.store.listJoinKeys().find((k) => k.id === key.row.id)?.uses,
    1,
    "the router enrolled it",
  );
  assert.ok(existsSync(join(configDir, PENDING_KEY_FILE)), "the offered key is kept for the retry");

  const result = await enroll(common);
  const nodes = router.store.listNodes().filter((n) => n.project === "retry");
  assert.equal(nodes.length, 1, "one node, not two");
  assert.equal(result.nodeId, nodes[0].nodeId);
  assert.equal(
    router.store.listJoinKeys().find((k) => k.id === key.row.id)?.uses,
    1,
    "no second use was spent",
  );
  assert.equal((await loadEnrollmentState(configDir))?.nodeId, nodes[0].nodeId);
  assert.ok(!existsSync(join(configDir, PENDING_KEY_FILE)), "the pending key became the node's own");
});

test("a retry with another join key offers a fresh key pair", { timeout: 30_000 }, async () => {
  const first = createJoinKey(router.store, router.identity, {
    project: "retry2",
    uses: 1,
    ttlMs: null,
    labels: {},
  });
  const second = createJoinKey(router.store, router.identity, {
    project: "retry2",
    uses: 1,
    ttlMs: null,
    labels: {},
  });
  const configDir = join(tempDir(), "xerotier");
  const common = { allowInsecure: true, configDir, logger: silentLogger(), timeoutMs: 5000 };
  await assert.rejects(enroll({ ...common, joinKey: first.key, routerUrl: proxyUrl }));
  const result = await enroll({ ...common, joinKey: second.key });
  assert.equal(router.store.listNodes().filter((n) => n.project === "retry2").length, 2);
  assert.equal(router.store.getNode(result.nodeId)?.joinKeyId, second.row.id);
});
