/**
 * The inference path with real processes: `xim router serve` (OpenAI API,
 * metrics), API keys and join keys minted by the CLI, and `xim run` with
 * the simulated engine (a child process of the node, as vLLM would be).
 * A SIGTERM during a stream lets that stream finish and the node exit 0;
 * a second SIGTERM stops at once.
 */
import assert from "node:assert/strict";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, test } from "node:test";
import { loopbackServeArgs } from "../../scripts/lib/loopback-router.ts";
import { findFreePort } from "../../src/engine/free-port.ts";
import { baseEnv, waitFor, XimProcess, xim } from "../router/harness.ts";

const home = mkdtempSync(join(tmpdir(), "xim-e2e-inf-"));
const stateDir = join(home, "router");
const env = baseEnv(home);
const nodeDir = join(home, "node");

interface RouterInfo {
  httpUrl: string;
  metricsUrl: string;
}

async function readStream(res: Response, onFirst?: () => void): Promise<string> {
  const reader = (res.body as ReadableStream<Uint8Array>).getReader();
  let text = "";
  for (;;) {
    const { value, done } = await reader.read();
    if (done) return text;
    if (text === "") onFirst?.();
    text += Buffer.from(value).toString();
  }
}

describe("inference with real router and node processes", { timeout: 90_000 }, () => {
  let router: XimProcess;
  let node: XimProcess | undefined;
  let info: RouterInfo;
  let apiKey: string;
  let metricsPort: number;

  const auth = () => ({ authorization: `Bearer ${apiKey}`, "content-type": "application/json" });
  const chat = (extra: Record<string, unknown> = {}) =>
    fetch(`${info.httpUrl}/v1/chat/completions`, {
      method: "POST",
      headers: auth(),
      body: JSON.stringify({
        model: "xim-sim",
        stream: true,
        messages: [{ role: "user", content: "hi" }],
        ...extra,
      }),
      signal: AbortSignal.timeout(60_000),
    });

  function startNode(vllmArgs: string, extra: Record<string, string> = {}): XimProcess {
    return new XimProcess(["run"], {
      ...env,
      XEROTIER_AGENT_ENGINE: "sim",
      XEROTIER_AGENT_CONFIG_DIR: nodeDir,
      XEROTIER_AGENT_VLLM_ARGS: vllmArgs,
      XEROTIER_AGENT_LEASE_RENEWAL_INTERVAL_MS: "200",
      XEROTIER_AGENT_LEASE_DURATION_MS: "2000",
      XEROTIER_AGENT_DRAIN_GRACE_SECONDS: "20",
      XEROTIER_AGENT_METRICS_PORT: String(metricsPort),
      ...extra,
    });
  }

  async function modelListed(): Promise<boolean> {
    const res = await fetch(`${info.httpUrl}/v1/models`, { headers: auth() }).catch(() => undefined);
    if (!res?.ok) return false;
    return ((await res.json()) as { data: unknown[] }).data.length > 0;
  }

  before(async () => {
    assert.equal((await xim(["router", "init", "--state", stateDir], env)).code, 0);
    router = new XimProcess(loopbackServeArgs(stateDir, ["--metrics-port", "0"]), env);
    info = JSON.parse(await router.line((l) => l.startsWith("{"), 20_000));
    const key = await xim(
      ["router", "api-key", "create", "--state", stateDir, "--tenant", "acme", "--json"],
      env,
    );
    assert.equal(key.code, 0, key.stderr);
    apiKey = JSON.parse(key.stdout).key;
    assert.match(apiKey, /^xak_/);
    metricsPort = await findFreePort();
  });

  after(async () => {
    await node?.stop();
    await router?.stop();
    rmSync(home, { recursive: true, force: true });
  });

  test("xim run --dry-run prints what it would start and starts nothing", async () => {
    const r = await xim(["run", "--dry-run"], {
      ...env,
      XEROTIER_AGENT_ENGINE: "sim",
      XEROTIER_AGENT_MAX_CONCURRENT: "3",
    });
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stdout, /simulated/);
    assert.match(r.stdout, /Max concurrent requests: 3/);
    const j = await xim(["run", "--dry-run", "--json"], { ...env, XEROTIER_AGENT_ENGINE: "sim" });
    assert.equal(JSON.parse(j.stdout).maxConcurrent, 5, "5 by default for the simulated engine");
  });

  test("a node enrolled by xim run streams a completion through the router; metrics and readiness follow", async () => {
    const join = await xim(["router", "join-key", "create", "--state", stateDir, "--json"], env);
    node = startNode("--load-time-ms 200 --itl-ms 5 --output-tokens 20", {
      XEROTIER_AGENT_JOIN_KEY: JSON.parse(join.stdout).key,
    });
    await waitFor(modelListed, {
      timeoutMs: 30_000,
      what: "the node's model at the router",
      stopIf: () => node?.child.exitCode !== null,
    });
    const res = await chat({ stream_options: { include_usage: true } });
    assert.equal(res.status, 200);
    assert.ok(res.headers.get("x-request-id"));
    const text = await readStream(res);
    assert.ok(text.endsWith("data: [DONE]\n\n"));
    assert.match(text, /"completion_tokens":20/);
    assert.match(
      node.stderr,
      /VLLM_SALT_SECRET is the built-in default/,
      "warned about the default salt secret",
    );

    const ready = await fetch(`http://127.0.0.1:${metricsPort}/readyz`);
    assert.equal(ready.status, 200);
    const nodeMetrics = await (await fetch(`http://127.0.0.1:${metricsPort}/metrics`)).text();
    assert.match(nodeMetrics, /xim_node_requests_total\{outcome="ok"\} 1/);
    const routerMetrics = await (await fetch(`${info.metricsUrl}/metrics`)).text();
    assert.match(routerMetrics, /xim_router_requests_total\{outcome="ok"\} 1/);
  });

  test("a SIGTERM during a stream lets the stream finish, then the node exits 0", async () => {
    assert.ok(node);
    const running = node;
    // 20 tokens at 5 ms are quick; ask for a stream long enough to be mid-way at SIGTERM.
    await running.stop(); // a clean drain with nothing in flight
    node = startNode("--load-time-ms 200 --itl-ms 50 --output-tokens 40");
    await waitFor(modelListed, {
      timeoutMs: 30_000,
      what: "the restarted node",
      stopIf: () => node?.child.exitCode !== null,
    });
    const res = await chat();
    assert.equal(res.status, 200);
    const current = node;
    const text = await readStream(res, () => current.signal("SIGTERM"));
    assert.ok(text.endsWith("data: [DONE]\n\n"), `the stream finished: ${text.slice(-200)}`);
    assert.ok(!text.includes('"error"'));
    assert.equal((text.match(/"content":" ?\w+"/g) ?? []).length, 40, "all 40 tokens arrived");
    const exit = await current.exited;
    assert.equal(exit.code, 0, exit.stderr.slice(-2000));
    assert.match(exit.stderr, /draining/);
  });

  test("a second SIGTERM cancels in-flight streams and stops at once", async () => {
    node = startNode("--load-time-ms 200 --itl-ms 20 --output-tokens 100000");
    await waitFor(modelListed, {
      timeoutMs: 30_000,
      what: "the restarted node",
      stopIf: () => node?.child.exitCode !== null,
    });
    const res = await chat();
    const current = node;
    const started = Date.now();
    const text = await readStream(res, () => {
      current.signal("SIGTERM");
      // The second once the first was taken (two signals of one kind sent at once may merge into one).
      void waitFor(() => current.stderr.includes("node state: ready -> draining"), {
        timeoutMs: 30_000,
        what: "the node draining",
        stopIf: () => current.child.exitCode !== null,
      }).then(() => current.signal("SIGTERM"));
    });
    const exit = await current.exited;
    assert.equal(exit.code, 0, exit.stderr.slice(-2000));
    assert.ok(Date.now() - started < 15_000, "well before the 20 s grace");
    assert.match(text.split("\n\n").filter(Boolean).at(-1) as string, /^data: \{"error":.*"code":"draining"/);
  });
});
