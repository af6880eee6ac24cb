/**
 * A router whose start fails part-way (here: its metrics port is taken)
 * reports the failure and leaves nothing it started listening or ticking.
 */
import assert from "node:assert/strict";
import { mkdtempSync, rmSync } from "node:fs";
import { createServer, type Server } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, test } from "node:test";
import { silentLogger } from "../../src/core/log.ts";
import { startRouterService } from "../../src/router/service.ts";
import { waitFor } from "./harness.ts";

const dir = mkdtempSync(join(tmpdir(), "xim-service-start-"));
after(() => rmSync(dir, { recursive: true, force: true }));

function listening(): Promise<Server> {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.once("error", reject);
    server.listen(0, "127.0.0.1", () => resolve(server));
  });
}

/** Listening servers and timers of this process (ZeroMQ sockets live outside Node's handle list). */
function handles(): { servers: number; timers: number } {
  const info = process.getActiveResourcesInfo();
  return {
    servers: info.filter((r) => r === "TCPServerWrap").length,
    timers: info.filter((r) => r === "Timeout").length,
  };
}

test("a router whose metrics port is taken fails with that error and closes what it had started", {
  timeout: 30_000,
}, async () => {
  const blocker = await listening();
  try {
    const port = (blocker.address() as { port: number }).port;
    const before = handles();
    await assert.rejects(
      startRouterService({
        stateDir: join(dir, "router"),
        enrollListen: { host: "127.0.0.1", port: 0 },
        controlBind: "tcp://127.0.0.1:0",
        streamingBind: "tcp://127.0.0.1:0",
        http: { host: "127.0.0.1", port: 0 },
        metricsListen: { host: "127.0.0.1", port },
        logger: silentLogger(),
      }),
      (err: NodeJS.ErrnoException) => err.code === "EADDRINUSE" || /in use|EADDRINUSE/.test(err.message),
    );
    // The enrollment and API servers and the metrics sync timer were started before the failure. A
    // closed server leaves Node's handle list a loop turn after close() resolves, so this waits for it;
    // one that was never closed stays and fails the test at the (generous, load-proof) deadline.
    const same = () => JSON.stringify(handles()) === JSON.stringify(before);
    await waitFor(same, { what: "the started servers and timers to be closed", timeoutMs: 10_000 });
  } finally {
    await new Promise<void>((resolve) => blocker.close(() => resolve()));
  }
});
