/**
 * A real `xim router serve` child process on loopback (every port chosen by
 * the OS), and raw client connections to its HTTP ports that speak plain
 * TCP or TLS (the router's certificate is self-signed: these clients do not
 * verify it, they attack it). Shared by the http-* security tests and the
 * router fuzzers.
 */
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import net from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import tls from "node:tls";
import { loopbackServeArgs } from "../../scripts/lib/loopback-router.ts";
import { baseEnv, type Env, XimProcess } from "../router/harness.ts";

export interface RouterChild {
  proc: XimProcess;
  /** The router's state folder (open it with RouterStore to mint keys). */
  stateDir: string;
  enrollUrl: string;
  httpUrl: string;
  /** Still running (neither exited nor killed). */
  alive: () => boolean;
  /** Resident memory of the process in bytes (Linux /proc). */
  rssBytes: () => number;
  stop: () => Promise<void>;
}

export interface RouterChildOptions {
  insecureHttp: boolean;
  args?: string[];
  env?: Env;
}

export async function startRouterChild(o: RouterChildOptions): Promise<RouterChild> {
  const home = mkdtempSync(join(tmpdir(), "xim-http-router-"));
  const stateDir = join(home, "router");
  const args = loopbackServeArgs(stateDir, [
    ...(o.insecureHttp ? ["--insecure-http"] : []),
    ...(o.args ?? []),
  ]);
  const proc = new XimProcess(args, baseEnv(home, { XEROTIER_AGENT_LOG_LEVEL: "debug", ...o.env }));
  const stop = async () => {
    await proc.stop();
    rmSync(home, { recursive: true, force: true });
  };
  try {
    // Generous: a cold start of main.ts on two shared, busy cores takes seconds.
    const info = JSON.parse(await proc.line((l) => l.startsWith("{"), 60_000)) as {
      enrollUrl: string;
      httpUrl: string;
    };
    return {
      proc,
      stateDir,
      enrollUrl: info.enrollUrl,
      httpUrl: info.httpUrl,
      alive: () => proc.child.exitCode === null && proc.child.signalCode === null,
      rssBytes: () => {
        const status = readFileSync(`/proc/${proc.pid}/status`, "utf8");
        return Number(/VmRSS:\s+(\d+) kB/.exec(status)?.[1] ?? 0) * 1024;
      },
      stop,
    };
  } catch (err) {
    await stop();
    throw err;
  }
}

/** A raw connection to an http:// or https:// URL's host and port (TLS not verified: see the module). */
export function connect(url: string): net.Socket {
  const u = new URL(url);
  const port = Number(u.port);
  const host = u.hostname.replace(/^\[|\]$/g, "");
  if (u.protocol === "https:") return tls.connect({ host, port, rejectUnauthorized: false, servername: "" });
  return net.connect(port, host);
}

export interface RawAnswer {
  status: number;
  head: string;
  body: string;
}

/**
 * Send bytes, half-close when `end`, and collect what comes back until the
 * server closes or a whole Content-Length answer arrived. "closed" when no
 * HTTP answer came at all.
 */
export function exchange(
  url: string,
  bytes: Buffer | string,
  o: { timeoutMs?: number; end?: boolean } = {},
): Promise<RawAnswer | "closed"> {
  return new Promise((resolve, reject) => {
    const socket = connect(url);
    const parts: Buffer[] = [];
    const timer = setTimeout(() => {
      socket.destroy();
      reject(new Error(`no answer from ${url} within ${o.timeoutMs ?? 15_000} ms`));
    }, o.timeoutMs ?? 15_000);
    const parse = (): RawAnswer | undefined => {
      const all = Buffer.concat(parts).toString("latin1");
      const end = all.indexOf("\r\n\r\n");
      if (end === -1) return undefined;
      const head = all.slice(0, end);
      const length = /\r\ncontent-length: *(\d+)/i.exec(head);
      const body = all.slice(end + 4);
      if (length && body.length < Number(length[1])) return undefined;
      return {
        status: Number(/^HTTP\/1\.[01] (\d{3})/.exec(head)?.[1]),
        head,
        body: length ? body.slice(0, Number(length[1])) : body,
      };
    };
    const finish = (answer: RawAnswer | "closed") => {
      clearTimeout(timer);
      socket.destroy();
      resolve(answer);
    };
    socket.on("data", (d: Buffer) => {
      parts.push(d);
      const a = parse();
      if (a && /\r\ncontent-length:/i.test(a.head)) finish(a);
    });
    socket.on("error", () => undefined);
    socket.on("close", () => finish(parse() ?? "closed"));
    if (o.end) socket.end(bytes);
    else socket.write(bytes);
  });
}

/** GET a path with a fresh connection; the status, or "closed". */
export async function getStatus(url: string, path: string): Promise<number | "closed"> {
  const a = await exchange(url, `GET ${path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n`);
  return a === "closed" ? a : a.status;
}

/** A connection that is open (TLS handshake done for https), with a promise of its close. */
export async function openConnection(url: string): Promise<{ socket: net.Socket; closed: Promise<void> }> {
  const socket = connect(url);
  const closed = new Promise<void>((resolve) => socket.once("close", () => resolve()));
  socket.on("error", () => undefined);
  // Read (and drop) what the server sends: a paused socket never sees the server's close.
  socket.resume();
  await new Promise<void>((resolve, reject) => {
    socket.once(socket instanceof tls.TLSSocket ? "secureConnect" : "connect", () => resolve());
    closed.then(() => reject(new Error(`${url} closed the connection before it was open`)));
  });
  return { socket, closed };
}

/** Resolves "closed" when the promise settles within ms, else "open" (a bound, not a timing assertion). */
export function within(closed: Promise<void>, ms: number): Promise<"closed" | "open"> {
  return new Promise((resolve) => {
    const timer = setTimeout(() => resolve("open"), ms);
    void closed.then(() => {
      clearTimeout(timer);
      resolve("closed");
    });
  });
}
