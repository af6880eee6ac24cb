/**
 * @module Where an engine serves: a loopback TCP port (the default; a fresh
 * free one per run), or a Unix socket (XEROTIER_AGENT_VLLM_SOCKET_PATH,
 * vLLM's --uds). Written as an address string: `http://127.0.0.1:<port>`
 * or `unix:<path>`.
 */
import { rm, stat } from "node:fs/promises";
import { createConnection } from "node:net";
import { XimError } from "../core/errors.ts";
import { findFreePort } from "./free-port.ts";

export type EngineEndpoint = { host: string; port: number } | { socketPath: string };

export function endpointAddress(endpoint: EngineEndpoint): string {
  return "socketPath" in endpoint
    ? `unix:${endpoint.socketPath}`
    : `http://${endpoint.host}:${endpoint.port}`;
}

/** The endpoint of an address string (the inverse of endpointAddress). */
export function parseEndpoint(address: string): EngineEndpoint {
  if (address.startsWith("unix:")) return { socketPath: address.slice(5) };
  const url = new URL(address);
  return { host: url.hostname, port: Number(url.port) };
}

function answers(path: string): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = createConnection({ path });
    const done = (yes: boolean) => {
      socket.destroy();
      resolve(yes);
    };
    socket.setTimeout(1000, () => done(false));
    socket.once("connect", () => done(true));
    socket.once("error", () => done(false));
  });
}

/**
 * Prepare a Unix socket path for a new engine: a stale socket file left by a
 * dead engine is removed; one that something still answers on is refused.
 */
export async function prepareSocketPath(path: string): Promise<EngineEndpoint> {
  const info = await stat(path).catch(() => undefined);
  if (info) {
    if (!info.isSocket()) {
      throw new XimError(
        "XIM_ENGINE_SOCKET_PATH",
        `XEROTIER_AGENT_VLLM_SOCKET_PATH=${path} exists and is not a socket`,
        {
          hint: "Point it at a path where the engine may create its socket.",
        },
      );
    }
    if (await answers(path)) {
      throw new XimError(
        "XIM_ENGINE_SOCKET_BUSY",
        `another process already serves on ${path} (address already in use)`,
        {
          hint: "Stop the stray engine (`ss -lxp | grep <path>` finds it) or choose another XEROTIER_AGENT_VLLM_SOCKET_PATH.",
        },
      );
    }
    await rm(path, { force: true });
  }
  return { socketPath: path };
}

/** The endpoint of one engine run. */
export function nextEndpoint(socketPath: string | undefined): Promise<EngineEndpoint> {
  if (socketPath) return prepareSocketPath(socketPath);
  return findFreePort("127.0.0.1").then((port) => ({ host: "127.0.0.1", port }));
}
