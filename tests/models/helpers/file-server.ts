/**
 * A loopback HTTP server for pull tests: serves files (with Range), a JSON
 * manifest and a Hugging Face-shaped API, and misbehaves on request:
 * fail the first N requests of a path, cut a transfer half-way, ignore
 * Range, or hold a response until the test releases it. It counts the
 * requests and body bytes it served per path.
 */
import { createServer, type IncomingMessage, type Server, type ServerResponse } from "node:http";
import type { AddressInfo } from "node:net";
import { sha256Hex } from "../../../src/core/sha256.ts";

export interface Fault {
  /** Answer this many requests with `status` before serving. */
  failFirst?: number;
  status?: number;
  retryAfter?: string;
  body?: string;
  /** Cut the connection after this many body bytes, on the first N serving requests. */
  cutAfterBytes?: number;
  cutTimes?: number;
  /**
   * When to cut, given the file offset the sent part ends at. Without it the
   * cut comes 20 ms after the part left this process, with bytes possibly
   * still in flight: the client then keeps only what it wrote before the
   * connection died, which is timing. A test that asserts an exact resume
   * offset waits here until the client has written `end` bytes.
   */
  cutWhen?: (end: number) => Promise<void>;
  /** Answer 200 with the whole file even to a Range request. */
  ignoreRange?: boolean;
  /** Wait for this before sending the body. */
  hold?: Promise<void>;
}

export interface Served {
  requests: number;
  bytes: number;
  ranges: string[];
  authorization: Array<string | undefined>;
}

export function sha256(data: Uint8Array | string): string {
  return sha256Hex(data);
}

export class FileServer {
  readonly files = new Map<string, Uint8Array>();
  /** JSON bodies by path, or by path and query ("/x?cursor=2") for paginated listings. */
  readonly json = new Map<string, unknown>();
  /** Link headers to send with a JSON body, by the same key. */
  readonly links = new Map<string, string>();
  readonly faults = new Map<string, Fault>();
  readonly served = new Map<string, Served>();
  /** Paths that require this bearer token (401 without it). */
  requireToken: string | undefined;
  #server: Server | undefined;
  #failures = new Map<string, number>();
  #cuts = new Map<string, number>();
  base = "";

  async start(): Promise<string> {
    this.#server = createServer((req, res) => {
      this.#handle(req, res).catch(() => res.destroy());
    });
    await new Promise<void>((resolve) => this.#server?.listen(0, "127.0.0.1", resolve));
    const { port } = this.#server.address() as AddressInfo;
    this.base = `http://127.0.0.1:${port}`;
    return this.base;
  }

  async stop(): Promise<void> {
    this.#server?.closeAllConnections();
    await new Promise<void>((resolve) => this.#server?.close(() => resolve()));
  }

  stats(path: string): Served {
    let s = this.served.get(path);
    if (!s) {
      s = { requests: 0, bytes: 0, ranges: [], authorization: [] };
      this.served.set(path, s);
    }
    return s;
  }

  totalBodyBytes(): number {
    let n = 0;
    for (const [path, s] of this.served) if (this.files.has(path)) n += s.bytes;
    return n;
  }

  async #handle(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const url = new URL(req.url ?? "/", this.base);
    const path = decodeURIComponent(url.pathname);
    const stats = this.stats(path);
    stats.requests += 1;
    stats.ranges.push(req.headers.range ?? "");
    stats.authorization.push(req.headers.authorization);
    if (this.requireToken && req.headers.authorization !== `Bearer ${this.requireToken}`) {
      res.writeHead(401, { "content-type": "application/json" });
      res.end(JSON.stringify({ error: "Invalid credentials in Authorization header" }));
      return;
    }
    const fault = this.faults.get(path) ?? {};
    const failed = this.#failures.get(path) ?? 0;
    if (fault.failFirst && failed < fault.failFirst) {
      this.#failures.set(path, failed + 1);
      const headers: Record<string, string> = { "content-type": "application/json" };
      if (fault.retryAfter !== undefined) headers["retry-after"] = fault.retryAfter;
      res.writeHead(fault.status ?? 503, headers);
      res.end(fault.body ?? JSON.stringify({ error: "try again later" }));
      return;
    }
    const jsonKey = this.json.has(path + url.search) ? path + url.search : path;
    if (this.json.has(jsonKey)) {
      const body = JSON.stringify(this.json.get(jsonKey));
      const link = this.links.get(jsonKey);
      res.writeHead(200, { "content-type": "application/json", ...(link ? { link } : {}) });
      res.end(body);
      return;
    }
    const file = this.files.get(path);
    if (!file) {
      res.writeHead(404, { "content-type": "application/json" });
      res.end(JSON.stringify({ error: `Entry not found: ${path}` }));
      return;
    }
    let start = 0;
    const range = /^bytes=(\d+)-$/.exec(req.headers.range ?? "");
    if (range && !fault.ignoreRange) {
      start = Number(range[1]);
      if (start >= file.byteLength) {
        res.writeHead(416, { "content-range": `bytes */${file.byteLength}` });
        res.end();
        return;
      }
    }
    const body = file.subarray(start);
    const headers: Record<string, string | number> = {
      "content-type": "application/octet-stream",
      "content-length": body.byteLength,
      "accept-ranges": "bytes",
    };
    if (start > 0) headers["content-range"] = `bytes ${start}-${file.byteLength - 1}/${file.byteLength}`;
    res.writeHead(start > 0 ? 206 : 200, headers);
    if (fault.hold) await fault.hold;
    const cuts = this.#cuts.get(path) ?? 0;
    if (fault.cutAfterBytes !== undefined && cuts < (fault.cutTimes ?? 1)) {
      this.#cuts.set(path, cuts + 1);
      const part = body.subarray(0, fault.cutAfterBytes);
      stats.bytes += part.byteLength;
      const cut = () => res.destroy();
      res.write(part, () => {
        if (fault.cutWhen) fault.cutWhen(start + part.byteLength).then(cut, cut);
        else setTimeout(cut, 20);
      });
      return;
    }
    stats.bytes += body.byteLength;
    res.end(body);
  }
}

/** Deterministic bytes of a given length. */
export function bytesOf(length: number, seed = 1): Uint8Array {
  const out = new Uint8Array(length);
  let x = seed;
  for (let i = 0; i < length; i++) {
    x = (x * 1103515245 + 12345) >>> 0;
    out[i] = x >>> 24;
  }
  return out;
}
