/**
 * The client's X-Request-ID is echoed only when it is safe to put in a
 * header and a log line (1-128 printable ASCII characters, no spaces);
 * anything else is replaced by the router's own id, a fresh random UUID
 * per request, so what one response shows says nothing about the next.
 * Raw sockets send the bytes a well-behaved HTTP client would refuse to.
 */
import assert from "node:assert/strict";
import net from "node:net";
import { after, before, describe, test } from "node:test";
import { Stack } from "../helpers/stack.ts";

const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/;

/** GET /health with `header` (raw bytes, latin1) as X-Request-ID; resolves with the answer's X-Request-ID. */
function echoed(port: number, header: string | undefined): Promise<string> {
  return new Promise((resolve, reject) => {
    const socket = net.connect(port, "127.0.0.1");
    const timer = setTimeout(() => {
      socket.destroy();
      reject(new Error("no answer within 10 s"));
    }, 10_000);
    let text = "";
    socket.setEncoding("latin1");
    socket.on("data", (d: string) => {
      text += d;
      const end = text.indexOf("\r\n\r\n");
      if (end === -1) return;
      clearTimeout(timer);
      socket.destroy();
      const line = text
        .slice(0, end)
        .split("\r\n")
        .find((l) => l.toLowerCase().startsWith("x-request-id:"));
      resolve(line ? line.slice("x-request-id:".length).trim() : "(none)");
    });
    socket.on("error", (err) => {
      clearTimeout(timer);
      reject(err);
    });
    const extra = header === undefined ? "" : `X-Request-ID: ${header}\r\n`;
    socket.write(`GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\n${extra}Connection: close\r\n\r\n`, "latin1");
  });
}

describe("the X-Request-ID a client sees", { timeout: 60_000 }, () => {
  let stack: Stack;
  let port: number;

  before(async () => {
    stack = await Stack.start();
    port = Number(new URL(stack.url).port);
  });
  after(async () => {
    await stack?.close();
  });

  test("a valid client id is echoed as sent, up to 128 characters", async () => {
    assert.equal(await echoed(port, "trace-42/abc:def"), "trace-42/abc:def");
    const longest = "x".repeat(128);
    assert.equal(await echoed(port, longest), longest);
  });

  test("an id too long, with spaces, or with bytes outside printable ASCII is replaced by the router's own", async () => {
    for (const bad of ["x".repeat(129), "two words", "caf\u00e9", "tab\there", ""]) {
      const got = await echoed(port, bad);
      assert.match(got, UUID, `${JSON.stringify(bad)} came back as ${JSON.stringify(got)}`);
    }
  });

  test("the router's ids are random UUIDs, a new one for every response", async () => {
    const ids = new Set<string>();
    for (let i = 0; i < 20; i++) {
      const id = await echoed(port, undefined);
      assert.match(id, UUID);
      ids.add(id);
    }
    assert.equal(ids.size, 20);
  });
});
