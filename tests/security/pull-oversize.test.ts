/**
 * Attack (memory): a manifest server, a hub's file listing or an error
 * response streams far more than any model listing needs. The pull reads
 * at most a bounded prefix as it streams, stops reading (the server sees
 * its writes stall and the connection close), and fails with an error
 * naming the address and the limit. Real loopback HTTP servers.
 */
import assert from "node:assert/strict";
import { mkdtempSync, rmSync } from "node:fs";
import { createServer, type Server } from "node:http";
import type { AddressInfo } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, test } from "node:test";
import { type PullConfig, pullModel } from "../../src/models/pull.ts";
import { resolveSource } from "../../src/models/resolve-source.ts";
import type { PullError } from "../../src/models/source.ts";
import { NETWORK_LIMITS } from "../../src/models/sources/http.ts";

const root = mkdtempSync(join(tmpdir(), "xim-pull-oversize-"));
after(() => rmSync(root, { recursive: true, force: true }));

/** What the server sends at most; four times the limit, so buffering it all is plainly visible. */
const SERVED_AT_MOST = 4 * NETWORK_LIMITS.jsonBytes;

let n = 0;
function config(): PullConfig {
  n += 1;
  return {
    modelCacheDir: join(root, `c${n}`),
    modelCacheMaxSizeGb: 100,
    modelPullMaxAttempts: 1,
    modelPullBaseDelayMs: 1,
    modelPullMaxDelayMs: 1,
  };
}

interface Flood {
  base: string;
  /** Bytes the server managed to hand to the socket before the client went away. */
  sent: () => number;
  close: () => Promise<void>;
}

/**
 * A server that answers every request with `status`, the `head` of a JSON
 * document, then filler up to SERVED_AT_MOST, honouring backpressure (so
 * "sent" is what the client actually accepted, plus the socket buffers).
 */
async function flood(status: number, head: string, declareLength = false): Promise<Flood> {
  let sent = 0;
  const server: Server = createServer((_req, res) => {
    const filler = Buffer.alloc(64 * 1024, 0x20);
    res.writeHead(status, {
      "content-type": "application/json",
      ...(declareLength ? { "content-length": String(SERVED_AT_MOST) } : {}),
    });
    res.write(head);
    sent += head.length;
    const pump = () => {
      while (sent < SERVED_AT_MOST) {
        sent += filler.byteLength;
        if (!res.write(filler)) return void res.once("drain", pump);
      }
      res.end();
    };
    res.on("error", () => {});
    res.on("close", () => res.removeAllListeners("drain"));
    pump();
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const { port } = server.address() as AddressInfo;
  return {
    base: `http://127.0.0.1:${port}`,
    sent: () => sent,
    async close() {
      server.closeAllConnections();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}

/** Kernel socket buffers let a few MB past the limit; buffering everything would reach SERVED_AT_MOST. */
const STOPPED_EARLY = 2 * NETWORK_LIMITS.jsonBytes;

test("an endless manifest is cut off at the limit while it streams", { timeout: 60_000 }, async () => {
  const server = await flood(200, '{"name":"huge","files":[');
  try {
    const source = resolveSource(`${server.base}/m/manifest.json`, { env: {} });
    await assert.rejects(pullModel({ source, config: config(), sleep: async () => {} }), (err: PullError) => {
      assert.equal(err.code, "XIM_PULL_TOO_LARGE", err.message);
      assert.match(err.message, /manifest\.json/);
      assert.ok(err.message.includes(String(NETWORK_LIMITS.jsonBytes)), err.message);
      return true;
    });
    assert.ok(server.sent() < STOPPED_EARLY, `the client stopped reading: ${server.sent()} bytes sent`);
  } finally {
    await server.close();
  }
});

test("a manifest whose Content-Length is over the limit is refused before it is read", {
  timeout: 60_000,
}, async () => {
  const server = await flood(200, '{"name":"huge","files":[', true);
  try {
    const source = resolveSource(`${server.base}/m/manifest.json`, { env: {} });
    await assert.rejects(
      pullModel({ source, config: config(), sleep: async () => {} }),
      (err: PullError) => err.code === "XIM_PULL_TOO_LARGE",
    );
    assert.ok(server.sent() < STOPPED_EARLY, `${server.sent()} bytes sent`);
  } finally {
    await server.close();
  }
});

test("an endless hub file listing (HF_ENDPOINT) is cut off at the limit", { timeout: 60_000 }, async () => {
  const server = await flood(200, '{"sha":"0123","siblings":[');
  try {
    const source = resolveSource("hf://org/huge", { env: { HF_ENDPOINT: server.base } });
    await assert.rejects(pullModel({ source, config: config(), sleep: async () => {} }), (err: PullError) => {
      assert.equal(err.code, "XIM_PULL_TOO_LARGE", err.message);
      assert.match(err.message, /\/api\/models\/org\/huge\/revision\/main/);
      return true;
    });
    assert.ok(server.sent() < STOPPED_EARLY, `${server.sent()} bytes sent`);
  } finally {
    await server.close();
  }
});

test("an endless error body is read only for a short reason", { timeout: 60_000 }, async () => {
  const server = await flood(404, '{"error":"no such model');
  try {
    const source = resolveSource(`${server.base}/m/manifest.json`, { env: {} });
    await assert.rejects(pullModel({ source, config: config(), sleep: async () => {} }), (err: PullError) => {
      assert.equal(err.code, "XIM_PULL_REFUSED", err.message);
      assert.match(err.message, /HTTP 404/);
      assert.ok(err.message.length < 1000, "the reason is short");
      return true;
    });
    assert.ok(server.sent() < STOPPED_EARLY, `${server.sent()} bytes sent`);
  } finally {
    await server.close();
  }
});
