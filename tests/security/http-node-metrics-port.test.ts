/**
 * Issue 14 items 1 and 2 on the node: the metrics/health port of a real
 * `xim run` (simulated engine, enrolled with a real router process) keeps
 * the per-client connection cap set through its XEROTIER_AGENT_HTTP_*
 * variables, and aborted uploads do not end the node.
 * The cap is 3; the header limit is long so that the held connections stay
 * open (slow headers on this same server: http-slow-clients.test.ts). The
 * bound is generous, for busy CI cores.
 */
import assert from "node:assert/strict";
import { after, before, describe, test } from "node:test";
import { findFreePort } from "../../src/engine/free-port.ts";
import { baseEnv, waitFor, XimProcess, xim } from "../router/harness.ts";
import { getStatus, openConnection, type RouterChild, startRouterChild, within } from "./router-child.ts";

const BOUND_MS = 20_000;

describe("the node's metrics/health port under attack", { timeout: 180_000 }, () => {
  let router: RouterChild;
  let node: XimProcess | undefined;
  let url: string;

  before(async () => {
    router = await startRouterChild({ insecureHttp: false });
    const home = router.stateDir.replace(/\/router$/, "");
    const env = baseEnv(home);
    const join = await xim(["router", "join-key", "create", "--state", router.stateDir, "--json"], env);
    assert.equal(join.code, 0, join.stderr);
    const port = await findFreePort();
    url = `http://127.0.0.1:${port}`;
    node = new XimProcess(["run"], {
      ...env,
      XEROTIER_AGENT_JOIN_KEY: JSON.parse(join.stdout).key,
      XEROTIER_AGENT_ENGINE: "sim",
      XEROTIER_AGENT_CONFIG_DIR: `${home}/node`,
      XEROTIER_AGENT_METRICS_PORT: String(port),
      XEROTIER_AGENT_HTTP_HEADERS_TIMEOUT_MS: "60000",
      XEROTIER_AGENT_HTTP_MAX_CONNECTIONS_PER_CLIENT: "3",
    });
    await waitFor(async () => (await getStatus(url, "/healthz").catch(() => "closed")) === 200, {
      timeoutMs: 60_000,
      what: `the node's /healthz (stderr: ${node.stderr.slice(-2000)})`,
      stopIf: () => node?.child.exitCode !== null,
    });
  });
  after(async () => {
    await node?.stop();
    await router?.stop();
  });

  test("aborted uploads and a fourth connection: cut off, and the node still answers", async () => {
    for (let i = 0; i < 6; i++) {
      const { socket, closed } = await openConnection(url);
      socket.write(
        `POST /metrics HTTP/1.1\r\nHost: x\r\nContent-Length: 200000\r\n\r\n${"x".repeat(70_000)}`,
      );
      socket.destroy();
      await closed;
    }
    const held = await Promise.all([1, 2, 3].map(() => openConnection(url)));
    try {
      const fourth = await openConnection(url);
      assert.equal(await within(fourth.closed, BOUND_MS), "closed", "the fourth connection");
      for (const h of held) assert.equal(await within(h.closed, 0), "open", "the three held");
    } finally {
      for (const h of held) h.socket.destroy();
    }
    let status: number | "closed" = "closed";
    for (let i = 0; i < 100 && status !== 200; i++) {
      status = await getStatus(url, "/healthz");
      if (status !== 200) await new Promise((r) => setTimeout(r, 100));
    }
    assert.equal(status, 200);
    assert.equal(node?.child.exitCode, null, "the node is running");
  });
});
