/**
 * @module A free loopback port for the engine. The OS picks one (bind port
 * 0, read it, close), then we check that nothing already serves it: vLLM
 * binds with SO_REUSEPORT (research vllm.md §1.2), so a stale engine on the
 * same port would not make the new one fail, it would share its traffic.
 */
import { createConnection, createServer } from "node:net";
import { XimError } from "../core/errors.ts";

function osPort(host: string): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.once("error", reject);
    server.listen(0, host, () => {
      const address = server.address();
      const port = typeof address === "object" && address ? address.port : 0;
      server.close(() => resolve(port));
    });
  });
}

/** Whether something accepts TCP connections on host:port. */
export function isServed(host: string, port: number, timeoutMs = 1000): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = createConnection({ host, port });
    const done = (served: boolean) => {
      socket.destroy();
      resolve(served);
    };
    socket.setTimeout(timeoutMs, () => done(false));
    socket.once("connect", () => done(true));
    socket.once("error", () => done(false));
  });
}

export async function findFreePort(host = "127.0.0.1", attempts = 20): Promise<number> {
  for (let i = 0; i < attempts; i++) {
    const port = await osPort(host);
    if (!(await isServed(host, port))) return port;
  }
  throw new XimError("XIM_NO_FREE_PORT", `found no free port on ${host} in ${attempts} tries`, {
    hint: "Something answers on every port the OS offers; check for stray engines with `ss -ltnp`.",
  });
}
