/**
 * Issue 14 item 1, the class: a request handler of any xim HTTP server
 * that throws or rejects is answered 500 in the server's error shape and
 * the process goes on (the test runner would report an uncaught exception
 * or an unhandled rejection otherwise). Real HTTP servers on loopback.
 */
import assert from "node:assert/strict";
import type { AddressInfo } from "node:net";
import { Writable } from "node:stream";
import { after, test } from "node:test";
import { guarded } from "../../src/core/guard.ts";
import { createGuardedServer, DEFAULT_HTTP_LIMITS } from "../../src/core/http-server.ts";
import { createLogger } from "../../src/core/log.ts";
import { sendJsonError } from "../../src/router/dispatch.ts";

const lines: string[] = [];
const logger = createLogger({
  level: "debug",
  pretty: false,
  destination: new Writable({
    write(chunk, _enc, done) {
      lines.push(String(chunk));
      done();
    },
  }),
});
const rejections: unknown[] = [];
const onRejection = (r: unknown) => rejections.push(r);
process.on("unhandledRejection", onRejection);
after(() => process.off("unhandledRejection", onRejection));

test("a handler that throws, or rejects, is answered 500 in OpenAI's shape and the server keeps serving", {
  timeout: 30_000,
}, async () => {
  const server = createGuardedServer({
    what: "test",
    logger,
    limits: DEFAULT_HTTP_LIMITS,
    answer: sendJsonError,
    handle: async (req, res) => {
      if (req.url === "/throw") throw new Error("a bug in the handler");
      if (req.url === "/reject") await Promise.reject(new TypeError("an async bug"));
      if (req.url === "/late") {
        res.writeHead(200).write("partial");
        throw new Error("failed after the headers");
      }
      res.end("fine");
    },
  });
  await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
  try {
    const base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
    for (const path of ["/throw", "/reject"]) {
      const res = await fetch(`${base}${path}`);
      assert.equal(res.status, 500, path);
      const body = (await res.json()) as { error: { type: string; code: string; message: string } };
      assert.equal(body.error.type, "server_error");
      assert.equal(body.error.code, "internal_error");
    }
    // Headers already sent: the only honest answer left is to cut the connection.
    await assert.rejects(fetch(`${base}/late`).then((r) => r.text()));
    assert.equal(await (await fetch(`${base}/ok`)).text(), "fine");
    assert.deepEqual(rejections, []);
    const failures = lines.filter((l) => l.includes("test request failed"));
    assert.equal(failures.length, 3, "each failure logged once");
  } finally {
    server.closeAllConnections();
    await new Promise((r) => server.close(r));
  }
});

test("a timer or socket callback that throws is logged, not raised", { timeout: 10_000 }, async () => {
  let calls = 0;
  const tick = guarded(logger, "test tick", () => {
    calls++;
    throw new Error("tick bug");
  });
  const asyncTick = guarded(logger, "test async tick", async () => {
    calls++;
    throw new Error("async tick bug");
  });
  await new Promise<void>((resolve) => {
    setTimeout(tick, 0);
    setTimeout(asyncTick, 0);
    setTimeout(resolve, 20);
  });
  await new Promise((r) => setImmediate(r));
  assert.equal(calls, 2);
  assert.ok(lines.some((l) => l.includes("test tick failed") && l.includes("tick bug")));
  assert.ok(lines.some((l) => l.includes("test async tick failed")));
  assert.deepEqual(rejections, []);
});
