/**
 * The node's HTTP client to the engine and a keep-alive connection that the
 * engine closed while it was idle: the request that went out on it is sent
 * again on a new connection, once. The engine here is a real HTTP server on
 * loopback that resets every connection at its second request, which is
 * what an idle close racing the node's next request looks like to the node,
 * made certain instead of a matter of timing.
 */
import assert from "node:assert/strict";
import { createServer, type Server } from "node:http";
import type { AddressInfo, Socket } from "node:net";
import { after, before, describe, test } from "node:test";
import type { XimError } from "../../src/core/errors.ts";
import { EngineHttpClient } from "../../src/engine/http-client.ts";

describe("a stale keep-alive connection to the engine", { timeout: 30_000 }, () => {
  let server: Server;
  let base: string;
  const requestsOn = new Map<Socket, number>();
  let connections = 0;
  let answered = 0;
  /** When set, every connection is reset at its first request too. */
  let resetAll = false;

  before(async () => {
    server = createServer((req, res) => {
      const n = (requestsOn.get(req.socket) ?? 0) + 1;
      requestsOn.set(req.socket, n);
      if (n > 1 || resetAll) {
        req.socket.resetAndDestroy();
        return;
      }
      req.resume();
      req.on("end", () => {
        answered++;
        const stream = req.headers.accept === "text/event-stream";
        res.writeHead(200, { "content-type": stream ? "text/event-stream" : "application/json" });
        res.end(stream ? 'data: {"n":1}\n\ndata: [DONE]\n\n' : '{"ok":true}');
      });
    });
    server.on("connection", () => connections++);
    await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
    base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  });
  after(async () => {
    server.closeAllConnections();
    await new Promise<void>((resolve) => server.close(() => resolve()));
  });

  test("a request on a connection the engine closed is sent again on a new one", async () => {
    const client = new EngineHttpClient(base);
    try {
      const body = { model: "m", messages: [] };
      assert.equal((await client.complete({ path: "/v1/chat/completions", body })).status, 200);
      // The pooled connection is reset at this request: the client retries on a new connection.
      assert.equal((await client.complete({ path: "/v1/chat/completions", body })).status, 200);
      const blocks = [];
      for await (const block of client.stream({ path: "/v1/chat/completions", body })) blocks.push(block);
      assert.equal(blocks.at(-1)?.done, true, "the stream ran to [DONE] after its retry");
      assert.equal(answered, 3, "each request answered once");
      assert.equal(connections, 3, "a new connection for each retry");
    } finally {
      client.close();
    }
  });

  test("a fresh connection that fails is not retried: the failure is the engine's", async () => {
    const client = new EngineHttpClient(base);
    resetAll = true;
    const before = connections;
    try {
      await assert.rejects(
        client.complete({ path: "/v1/chat/completions", body: {} }),
        (err: XimError) => err.code === "XIM_ENGINE_UNREACHABLE" && /ECONNRESET/.test(err.message),
      );
      assert.equal(connections - before, 1, "one connection, no retry");
    } finally {
      resetAll = false;
      client.close();
    }
  });
});
