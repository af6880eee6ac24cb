/**
 * How `xim run` answers signals, with real processes: `xim router serve`,
 * `xim run` with the simulated engine (its own child process), and clients
 * over HTTP. One SIGTERM drains (in-flight streams finish, new requests are
 * refused), a second cancels the streams still running with an error that
 * says why, a third exits at once with ExitCode.forcedStop. Every step
 * waits for the node's own log line or state, never for a pause.
 */
import assert from "node:assert/strict";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, test } from "node:test";
import { loopbackServeArgs } from "../../scripts/lib/loopback-router.ts";
import { StopSignals } from "../../src/agent/stop-signals.ts";
import { ExitCode } from "../../src/core/errors.ts";
import { silentLogger } from "../../src/core/log.ts";
import { findFreePort } from "../../src/engine/free-port.ts";
import { baseEnv, waitFor, XimProcess, xim } from "../router/harness.ts";

const home = mkdtempSync(join(tmpdir(), "xim-signals-"));
const stateDir = join(home, "router");
const env = baseEnv(home);

/** A stream read as it comes: its text so far, and its end. */
function follow(res: Response): { text: () => string; done: Promise<string> } {
  let text = "";
  const reader = (res.body as ReadableStream<Uint8Array>).getReader();
  const done = (async () => {
    for (;;) {
      const { value, done } = await reader.read();
      if (done) return text;
      text += Buffer.from(value).toString();
    }
  })();
  return { text: () => text, done };
}

test("StopSignals: the first aborts the drain, the second the streams, the third exits with 130", () => {
  const exits: number[] = [];
  const s = new StopSignals(silentLogger(), (code) => exits.push(code));
  s.receive("SIGTERM");
  assert.ok(s.drain.aborted && !s.now.aborted && exits.length === 0);
  s.receive("SIGINT");
  assert.ok(s.now.aborted && exits.length === 0);
  s.receive("SIGTERM");
  assert.deepEqual(exits, [ExitCode.forcedStop]);
  assert.equal(ExitCode.forcedStop, 130);
});

describe("xim run and its stop signals, with real processes", { timeout: 180_000 }, () => {
  let router: XimProcess;
  let httpUrl: string;
  let apiKey: string;
  const nodes: XimProcess[] = [];

  const chat = (extra: Record<string, unknown> = {}) =>
    fetch(`${httpUrl}/v1/chat/completions`, {
      method: "POST",
      headers: { authorization: `Bearer ${apiKey}`, "content-type": "application/json" },
      body: JSON.stringify({
        model: "xim-sim",
        stream: true,
        messages: [{ role: "user", content: "hi" }],
        ...extra,
      }),
      signal: AbortSignal.timeout(120_000),
    });

  async function modelListed(): Promise<boolean> {
    const res = await fetch(`${httpUrl}/v1/models`, { headers: { authorization: `Bearer ${apiKey}` } });
    return res.ok && ((await res.json()) as { data: unknown[] }).data.length > 0;
  }

  /** A node whose streams run 100000 tokens at 20 ms unless a request asks for fewer; grace 120 s (never reached). */
  async function startNode(): Promise<{ node: XimProcess; metricsPort: number }> {
    const joinKey = await xim(["router", "join-key", "create", "--state", stateDir, "--json"], env);
    assert.equal(joinKey.code, 0, joinKey.stderr);
    const metricsPort = await findFreePort();
    const node = new XimProcess(["run"], {
      ...env,
      XEROTIER_AGENT_ENGINE: "sim",
      XEROTIER_AGENT_JOIN_KEY: JSON.parse(joinKey.stdout).key,
      XEROTIER_AGENT_CONFIG_DIR: join(home, `node-${nodes.length}`),
      XEROTIER_AGENT_VLLM_ARGS: "--load-time-ms 100 --itl-ms 20 --output-tokens 100000",
      XEROTIER_AGENT_LEASE_RENEWAL_INTERVAL_MS: "200",
      XEROTIER_AGENT_LEASE_DURATION_MS: "3000",
      XEROTIER_AGENT_DRAIN_GRACE_SECONDS: "120",
      XEROTIER_AGENT_METRICS_PORT: String(metricsPort),
    });
    nodes.push(node);
    await logged(node, "node state: loading -> ready");
    // The router may dispatch once it lists the model (the node's status reached it).
    await waitFor(modelListed, { timeoutMs: 30_000, what: "the node's model at the router" });
    return { node, metricsPort };
  }

  /** Resolves once the node logged `what` (generous: the node shares 2 loaded cores with the test). */
  const logged = (node: XimProcess, what: string) =>
    waitFor(() => node.stderr.includes(what), {
      timeoutMs: 60_000,
      what,
      stopIf: () => node.child.exitCode !== null,
    });

  before(async () => {
    assert.equal((await xim(["router", "init", "--state", stateDir], env)).code, 0);
    router = new XimProcess(loopbackServeArgs(stateDir, ["--queue-timeout-ms", "1000"]), env);
    httpUrl = JSON.parse(await router.line((l) => l.startsWith("{"), 30_000)).httpUrl;
    const key = await xim(
      ["router", "api-key", "create", "--state", stateDir, "--tenant", "acme", "--json"],
      env,
    );
    assert.equal(key.code, 0, key.stderr);
    apiKey = JSON.parse(key.stdout).key;
  });

  after(async () => {
    for (const n of nodes) await n.stop();
    await router?.stop();
    rmSync(home, { recursive: true, force: true });
  });

  test("one SIGTERM drains: in-flight streams finish, new requests are refused; a second cancels the rest with a clear error", async () => {
    const { node, metricsPort } = await startNode();
    const long = follow(await chat());
    const short = follow(await chat({ max_tokens: 150 }));
    await waitFor(() => long.text() && short.text(), { timeoutMs: 30_000, what: "both streams under way" });

    node.signal("SIGTERM");
    await logged(node, "node state: ready -> draining");
    const readyz = (await (await fetch(`http://127.0.0.1:${metricsPort}/readyz`)).json()) as {
      state?: string;
    };
    assert.equal(readyz.state, "draining", "/readyz shows the node's state");
    const refused = await chat();
    assert.equal(refused.status, 503, "a draining node takes no new request");
    await refused.body?.cancel();
    const shortText = await short.done;
    assert.ok(
      shortText.endsWith("data: [DONE]\n\n"),
      `the in-flight stream finished: ${shortText.slice(-300)}`,
    );
    assert.ok(!long.text().includes('"error"'), "the long stream still runs within the grace");

    node.signal("SIGTERM");
    const longText = await long.done;
    const last = longText.split("\n\n").filter(Boolean).at(-1) as string;
    assert.match(last, /^data: \{"error":.*"code":"draining"/);
    assert.match(last, /stop at once \(a second signal\)/, "the error says why the stream ended");
    const exit = await node.exited;
    assert.equal(exit.code, 0, exit.stderr.slice(-2000));
    assert.match(exit.stderr, /second signal: cancelling in-flight streams/);
    assert.match(exit.stderr, /node state: draining -> stopped/);
  });

  test("a third signal exits at once with exit code 130", async () => {
    const { node } = await startNode();
    const stream = follow(await chat());
    await waitFor(() => stream.text(), { timeoutMs: 30_000, what: "the stream under way" });
    node.signal("SIGTERM");
    await logged(node, "node state: ready -> draining");
    // Two different signals back to back: the kernel delivers both (two of one kind could merge), and the
    // node handles both before its stop (which waits on the engine process) can finish.
    node.signal("SIGTERM");
    node.signal("SIGINT");
    const exit = await node.exited;
    assert.equal(exit.code, ExitCode.forcedStop, exit.stderr.slice(-2000));
    assert.match(exit.stderr, /third signal: exiting at once/);
    await stream.done.catch(() => undefined);
  });
});
