/**
 * Issue 14 item 2: slow clients and connection hoarding against the
 * router's API and enrollment ports (a real `xim router serve`) and the
 * metrics/health server the node and the router share. The limits are set
 * small (1 s) through their XEROTIER_AGENT_* variables so that no test
 * waits long; every bound below is 20x the limit or more, because two
 * shared CI cores can stall a process for seconds. A bound that passes is
 * the limit at work: without it Node holds such a client 60 s (headers),
 * 120 s (TLS handshake) or 300 s (body).
 */
import assert from "node:assert/strict";
import type { AddressInfo } from "node:net";
import { after, before, describe, test } from "node:test";
import { Registry } from "prom-client";
import { createGuardedServer } from "../../src/core/http-server.ts";
import { silentLogger } from "../../src/core/log.ts";
import { startHealthServer } from "../../src/observability/health-server.ts";
import { createApiKey } from "../../src/router/api-keys.ts";
import { RouterStore } from "../../src/router/store.ts";
import {
  exchange,
  getStatus,
  openConnection,
  type RouterChild,
  startRouterChild,
  within,
} from "./router-child.ts";

const BOUND_MS = 20_000;
const SHORT = {
  XEROTIER_AGENT_HTTP_HEADERS_TIMEOUT_MS: "1000",
  XEROTIER_AGENT_HTTP_BODY_IDLE_TIMEOUT_MS: "1000",
};

describe("slow clients on the router's ports (limits of 1 s)", { timeout: 180_000 }, () => {
  let router: RouterChild;
  let apiKey: string;
  before(async () => {
    router = await startRouterChild({ insecureHttp: false, env: SHORT });
    const store = await RouterStore.open(router.stateDir);
    try {
      apiKey = createApiKey(store, { project: "default", tenant: "slow" }).key;
    } finally {
      store.close();
    }
  });
  after(async () => {
    await router?.stop();
  });

  test("a client that never finishes its headers on the API port is cut off", async () => {
    const { socket, closed } = await openConnection(router.httpUrl);
    socket.write("POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nX-Slow: ");
    assert.equal(await within(closed, BOUND_MS), "closed");
    socket.destroy();
  });

  test("an authenticated request whose body stalls is answered 408 and closed", async () => {
    const head =
      `POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer ${apiKey}\r\n` +
      "Content-Type: application/json\r\nContent-Length: 1000\r\n\r\n";
    const answer = await exchange(router.httpUrl, `${head}{"model":`, { timeoutMs: BOUND_MS });
    assert.notEqual(answer, "closed");
    if (answer === "closed") return;
    assert.equal(answer.status, 408, answer.head);
    assert.equal(JSON.parse(answer.body).error.code, "request_timeout");
  });

  test("an enrollment whose body stalls (HTTPS) is answered 408 and closed", async () => {
    const head =
      "POST /v1/enroll HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 1000\r\n\r\n";
    const answer = await exchange(router.enrollUrl, `${head}{"joinKey":`, { timeoutMs: BOUND_MS });
    assert.notEqual(answer, "closed");
    if (answer !== "closed") assert.equal(answer.status, 408, answer.head);
  });

  test("a TLS handshake never begun on the enrollment port is cut off", async () => {
    const plain = router.enrollUrl.replace(/^https:/, "http:");
    const { socket, closed } = await openConnection(plain);
    assert.equal(await within(closed, BOUND_MS), "closed");
    socket.destroy();
  });

  test("after all that the router answers on both ports", async () => {
    assert.ok(router.alive());
    assert.equal(await getStatus(router.httpUrl, "/health"), 200);
    assert.equal(await getStatus(router.enrollUrl, "/v1/health"), 200);
  });
});

describe("connections per client address on the router's ports (cap of 4)", { timeout: 180_000 }, () => {
  let router: RouterChild;
  before(async () => {
    // Long timeouts here: the held connections must stay open for the test's length.
    router = await startRouterChild({
      insecureHttp: false,
      env: {
        XEROTIER_AGENT_HTTP_MAX_CONNECTIONS_PER_CLIENT: "4",
        XEROTIER_AGENT_HTTP_HEADERS_TIMEOUT_MS: "120000",
      },
    });
  });
  after(async () => {
    await router?.stop();
  });

  for (const port of ["httpUrl", "enrollUrl"] as const) {
    test(`${port === "httpUrl" ? "API" : "enrollment"} port: a fifth connection is closed at once, the four are kept, and a freed place is usable`, async () => {
      const held = await Promise.all([1, 2, 3, 4].map(() => openConnection(router[port])));
      try {
        // The connection is accepted by the kernel, then closed by the router: for TLS the
        // handshake never completes, so open it as plain TCP and watch for the close.
        const fifth = await openConnection(router[port].replace(/^https:/, "http:"));
        assert.equal(await within(fifth.closed, BOUND_MS), "closed");
        for (const h of held) assert.equal(await within(h.closed, 0), "open");
        held[0].socket.destroy();
        await held[0].closed;
        const path = port === "httpUrl" ? "/health" : "/v1/health";
        // The router sees the close a moment after the client: try until the place is free.
        let status: number | "closed" = "closed";
        for (let i = 0; i < 100 && status !== 200; i++) {
          status = await getStatus(router[port], path);
          if (status !== 200) await new Promise((r) => setTimeout(r, 100));
        }
        assert.equal(status, 200);
      } finally {
        for (const h of held) h.socket.destroy();
      }
    });
  }
});

describe("the metrics/health server of the node and the router", { timeout: 60_000 }, () => {
  test("slow headers are cut off and one address holds at most the cap", async () => {
    const health = await startHealthServer({
      host: "127.0.0.1",
      port: 0,
      registry: new Registry(),
      readiness: () => ({ ready: true, reasons: [] }),
      limits: { httpHeadersTimeoutMs: 1000, httpBodyIdleTimeoutMs: 1000, httpMaxConnectionsPerClient: 2 },
    });
    const url = `http://127.0.0.1:${health.port}`;
    try {
      const slow = await openConnection(url);
      slow.socket.write("GET /healthz HTTP/1.1\r\nHost: x\r\n");
      const second = await openConnection(url);
      const third = await openConnection(url);
      assert.equal(await within(third.closed, BOUND_MS), "closed", "the third connection");
      assert.equal(await within(slow.closed, BOUND_MS), "closed", "the slow one");
      second.socket.destroy();
      await second.closed;
      let status: number | "closed" = "closed";
      for (let i = 0; i < 100 && status !== 200; i++) {
        status = await getStatus(url, "/healthz");
        if (status !== 200) await new Promise((r) => setTimeout(r, 100));
      }
      assert.equal(status, 200);
    } finally {
      await health.close();
    }
  });
});

test("a response that waits long after its body arrived is not cut by the body idle limit", {
  timeout: 60_000,
}, async () => {
  const server = createGuardedServer({
    what: "test",
    logger: silentLogger(),
    limits: { httpHeadersTimeoutMs: 200, httpBodyIdleTimeoutMs: 200, httpMaxConnectionsPerClient: 8 },
    answer: (res, status, _code, message) => res.writeHead(status).end(message),
    handle: async (req, res) => {
      for await (const _ of req);
      // Like a model's first token after a long prefill: 5x the idle limit without a byte.
      await new Promise((r) => setTimeout(r, 1000));
      res.end("late but whole");
    },
  });
  await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
  try {
    const res = await fetch(`http://127.0.0.1:${(server.address() as AddressInfo).port}/`, {
      method: "POST",
      body: "x".repeat(100),
    });
    assert.equal(res.status, 200);
    assert.equal(await res.text(), "late but whole");
  } finally {
    server.closeAllConnections();
    await new Promise((r) => server.close(r));
  }
});
