/**
 * Enrollment and router reachability against a real router (the reference
 * router's service, in this process: ZeroMQ control plane with CURVE and
 * the HTTPS enrollment endpoint on loopback), a port that refuses, and a
 * TCP server that accepts but never speaks ZeroMQ.
 */
import assert from "node:assert/strict";
import { mkdirSync, writeFileSync } from "node:fs";
import { createServer, type Server } from "node:net";
import { join } from "node:path";
import { after, before, describe, test } from "node:test";
import type { EnrollmentFile } from "../../src/enrollment/state.ts";
import type { RouterService } from "../../src/router/service.ts";
import { type EnrolledNode, startEnrolledNode } from "../helpers/enrolled-node.ts";
import { cleanup, doctor, tempDir } from "./helpers.ts";

let enrolled: EnrolledNode;
let router: RouterService;
let enrolledDir: string;
let silent: Server | undefined;
const variant = (change: Partial<EnrollmentFile>, newKeys = false) => enrolled.variant(change, newKeys);

before(async () => {
  enrolled = await startEnrolledNode("doctor", tempDir);
  ({ router, enrolledDir } = enrolled);
});

after(async () => {
  await router?.close();
  silent?.close();
  cleanup();
});

describe("enrollment-state and router-reachable", () => {
  test("an enrolled node reaches its router: TCP, CURVE handshake and ping, with round-trip times", {
    timeout: 30_000,
  }, async () => {
    const r = await doctor({ XEROTIER_AGENT_CONFIG_DIR: enrolledDir }, { selectors: ["enrollment"] });
    assert.equal(r["enrollment-state"].status, "ok");
    assert.match(r["enrollment-state"].evidence, /^node \S+ \(project doctor\)/);
    assert.match(
      r["enrollment-state"].evidence,
      new RegExp(`control ${router.endpoints.control.replaceAll(".", "\\.")}`),
    );
    assert.equal(r["router-reachable"].status, "ok", r["router-reachable"].evidence);
    assert.match(
      r["router-reachable"].evidence,
      /TCP connect [\d.]+ ms, CURVE handshake and ping round trip [\d.]+ ms/,
    );
  });

  test("a node key the router does not know is refused at the CURVE handshake", {
    timeout: 30_000,
  }, async () => {
    const dir = await variant({}, true);
    const r = await doctor({ XEROTIER_AGENT_CONFIG_DIR: dir }, { selectors: ["router-reachable"] });
    assert.equal(r["router-reachable"].status, "fail");
    assert.match(r["router-reachable"].evidence, /refused this node's CURVE key/);
    assert.match(r["router-reachable"].fix ?? "", /xim enroll --join-key/);
  });

  test("an address that refuses connections fails at TCP", { timeout: 30_000 }, async () => {
    const probe = createServer();
    await new Promise<void>((resolve) => probe.listen(0, "127.0.0.1", resolve));
    const port = (probe.address() as { port: number }).port;
    await new Promise<void>((resolve) => probe.close(() => resolve()));
    const dir = await variant({ controlEndpoint: `tcp://127.0.0.1:${port}` });
    const r = await doctor({ XEROTIER_AGENT_CONFIG_DIR: dir }, { selectors: ["router-reachable"] });
    assert.equal(r["router-reachable"].status, "fail");
    assert.match(r["router-reachable"].evidence, /connection refused/);
    assert.match(r["router-reachable"].fix ?? "", new RegExp(`nc -vz 127\\.0\\.0\\.1 ${port}`));
  });

  test("a TCP server that is not the router accepts the connection but never answers the ping", {
    timeout: 30_000,
  }, async () => {
    silent = createServer((socket) => socket.on("error", () => {}));
    await new Promise<void>((resolve) => silent?.listen(0, "127.0.0.1", resolve));
    const port = (silent.address() as { port: number }).port;
    const dir = await variant({ controlEndpoint: `tcp://127.0.0.1:${port}` });
    const r = await doctor({ XEROTIER_AGENT_CONFIG_DIR: dir }, { selectors: ["router-reachable"] });
    assert.equal(r["router-reachable"].status, "fail");
    assert.match(r["router-reachable"].evidence, /TCP connect [\d.]+ ms, but no answer/);
  });

  test("a damaged enrollment state fails with the re-enroll hint, and reachability is skipped", async () => {
    const dir = join(tempDir(), "xerotier");
    mkdirSync(dir, { mode: 0o700 });
    writeFileSync(join(dir, "enrollment.json"), "{ not json", { mode: 0o600 });
    const r = await doctor({ XEROTIER_AGENT_CONFIG_DIR: dir }, { selectors: ["enrollment"] });
    assert.equal(r["enrollment-state"].status, "fail");
    assert.match(r["enrollment-state"].evidence, /cannot read .*enrollment\.json/);
    assert.match(r["enrollment-state"].fix ?? "", /--force/);
    assert.equal(r["router-reachable"].status, "skipped");
  });

  test("a node that never enrolled warns with the enroll command, or is fine when a join key is set", async () => {
    const dir = join(tempDir(), "none");
    const r = await doctor({ XEROTIER_AGENT_CONFIG_DIR: dir }, { selectors: ["enrollment"] });
    assert.equal(r["enrollment-state"].status, "warn");
    assert.match(r["enrollment-state"].fix ?? "", /xim enroll --join-key/);
    assert.equal(r["router-reachable"].status, "skipped");
    const withKey = await doctor(
      { XEROTIER_AGENT_CONFIG_DIR: dir, XEROTIER_AGENT_JOIN_KEY: "xjk_example" },
      { selectors: ["enrollment-state"] },
    );
    assert.equal(withKey["enrollment-state"].status, "ok");
  });
});
