/**
 * `xim run` that cannot register says, within seconds, which endpoint and
 * why (nothing listens, or another router answers), what to do, and points
 * to `xim doctor`; then it keeps retrying. Real processes: a router in this
 * process, `xim run` as a child with the simulated engine.
 */
import assert from "node:assert/strict";
import { type ChildProcess, spawn } from "node:child_process";
import { createServer } from "node:net";
import { join, resolve } from "node:path";
import { after, before, describe, test } from "node:test";
import { loudAttempt } from "../../src/agent/lease-loop.ts";
import type { EnrollmentFile } from "../../src/enrollment/state.ts";
import { generateCurveKeyPair } from "../../src/transport/curve.ts";
import { cleanup, tempDir } from "../doctor/helpers.ts";
import { type EnrolledNode, startEnrolledNode } from "../helpers/enrolled-node.ts";

const MAIN = resolve(import.meta.dirname, "../../main.ts");
let enrolled: EnrolledNode;
const children: ChildProcess[] = [];

before(async () => {
  enrolled = await startEnrolledNode("diag", tempDir);
});

after(async () => {
  for (const c of children) c.kill("SIGKILL");
  await enrolled?.router.close();
  cleanup();
});

const variant = (change: Partial<EnrollmentFile>) => enrolled.variant(change);

/** Start `xim run` and resolve with its output once `pattern` appears (30 s bound: start-up on a loaded machine). */
function runUntil(configDir: string, pattern: RegExp): Promise<string> {
  const home = tempDir("xim-home-");
  const child = spawn(process.execPath, [MAIN, "run"], {
    env: {
      PATH: process.env.PATH,
      HOME: home,
      XDG_CACHE_HOME: join(home, "cache"),
      XEROTIER_AGENT_CONFIG_DIR: configDir,
      XEROTIER_AGENT_ENGINE: "sim",
      XEROTIER_AGENT_DISABLE_METRICS_SERVER: "1",
    },
    stdio: ["ignore", "pipe", "pipe"],
  });
  children.push(child);
  let out = "";
  return new Promise((resolvePromise, reject) => {
    const timer = setTimeout(() => {
      child.kill("SIGKILL");
      reject(new Error(`no line matching ${pattern} within 30 s:\n${out.slice(-3000)}`));
    }, 30_000);
    const onData = (b: Buffer) => {
      out += b.toString();
      if (pattern.test(out)) {
        clearTimeout(timer);
        child.kill("SIGKILL");
        resolvePromise(out);
      }
    };
    child.stdout?.on("data", onData);
    child.stderr?.on("data", onData);
    child.once("exit", (code) => {
      if (!pattern.test(out)) {
        clearTimeout(timer);
        reject(new Error(`xim run exited ${code} before saying why:\n${out.slice(-3000)}`));
      }
    });
  });
}

describe("xim run that cannot register says why", { timeout: 90_000 }, () => {
  test("nothing listens at the control endpoint: the endpoint, 'connection refused', the fix and xim doctor", async () => {
    const probe = createServer();
    await new Promise<void>((r) => probe.listen(0, "127.0.0.1", r));
    const port = (probe.address() as { port: number }).port;
    await new Promise<void>((r) => probe.close(() => r()));
    const dir = await variant({ controlEndpoint: `tcp://127.0.0.1:${port}` });
    const out = await runUntil(dir, /cannot register with the router/);
    assert.match(
      out,
      new RegExp(`cannot register with the router at tcp://127\\.0\\.0\\.1:${port}: connection refused`),
    );
    assert.match(out, /nc -vz 127\.0\.0\.1/);
    assert.match(out, /xim doctor/);
  });

  test("another router answers with another CURVE key: said as such", async () => {
    const other = generateCurveKeyPair();
    const dir = await variant({ routerPublicKey: other.publicKey });
    const out = await runUntil(dir, /cannot register with the router/);
    assert.match(out, /a CURVE key that is not the one this node enrolled with/);
  });

  test("failures are logged loudly at first, then less and less often", () => {
    const loud = Array.from({ length: 40 }, (_, i) => i).filter(loudAttempt);
    assert.deepEqual(loud, [0, 1, 3, 7, 15, 31]);
  });
});
