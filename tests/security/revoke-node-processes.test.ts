/**
 * Attack: a node's machine is compromised (or retired) while it serves; the
 * operator revokes it with `xim router nodes revoke` while a streaming
 * request is in flight. Real processes only: `xim router serve`, `xim run`
 * with the simulated engine, and the revoke command as a third process
 * sharing the router's state database. The stream must end with a clear
 * error, the node must stop with exit code 13 and the fix, the listing must
 * show it revoked, and it must never serve again. Waits are generous (two
 * shared CPU cores can stall a process for seconds); none is a timing
 * assertion.
 */
import assert from "node:assert/strict";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, test } from "node:test";
import { loopbackServeArgs } from "../../scripts/lib/loopback-router.ts";
import { ExitCode } from "../../src/core/errors.ts";
import type { NodeListing } from "../../src/router/nodes.ts";
import { baseEnv, type Finished, waitFor, XimProcess, xim } from "../router/harness.ts";

const home = mkdtempSync(join(tmpdir(), "xim-revoke-procs-"));
const stateDir = join(home, "router");
const nodeDir = join(home, "node");
const env = baseEnv(home);
let router: XimProcess | undefined;
let node: XimProcess | undefined;
let httpUrl = "";
let apiKey = "";

function startNode(extra: Record<string, string> = {}): XimProcess {
  return new XimProcess(["run"], {
    ...env,
    XEROTIER_AGENT_CONFIG_DIR: nodeDir,
    XEROTIER_AGENT_ENGINE: "sim",
    // A stream that would run for minutes: it is still running when the node is revoked.
    XEROTIER_AGENT_VLLM_ARGS: "--load-time-ms 100 --itl-ms 20 --output-tokens 20000",
    XEROTIER_AGENT_DISABLE_METRICS_SERVER: "1",
    XEROTIER_AGENT_LEASE_RENEWAL_INTERVAL_MS: "200",
    XEROTIER_AGENT_LEASE_DURATION_MS: "5000",
    XEROTIER_AGENT_VLLM_SALT_SECRET: "test-secret-for-revoke-processes",
    ...extra,
  });
}

async function nodes(): Promise<NodeListing[]> {
  const r = await xim(["router", "nodes", "--state", stateDir, "--json"], env);
  assert.equal(r.code, 0, r.stderr);
  return (JSON.parse(r.stdout) as { nodes: NodeListing[] }).nodes;
}

function chat(): Promise<Response> {
  return fetch(`${httpUrl}/v1/chat/completions`, {
    method: "POST",
    headers: { authorization: `Bearer ${apiKey}`, "content-type": "application/json" },
    body: JSON.stringify({ model: "xim-sim", stream: true, messages: [{ role: "user", content: "hi" }] }),
    signal: AbortSignal.timeout(60_000),
  });
}

/** The process's exit, or a failure after timeoutMs (then it is killed in after()). */
async function exitOf(p: XimProcess, timeoutMs: number): Promise<Finished> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(
      () =>
        reject(
          new Error(`the process did not exit within ${timeoutMs} ms; stderr: ${p.stderr.slice(-2000)}`),
        ),
      timeoutMs,
    );
  });
  try {
    return await Promise.race([p.exited, timeout]);
  } finally {
    clearTimeout(timer);
  }
}

before(async () => {
  const init = await xim(["router", "init", "--state", stateDir], env);
  assert.equal(init.code, 0, init.stderr);
  router = new XimProcess(loopbackServeArgs(stateDir), env);
  httpUrl = JSON.parse(await router.line((l) => l.startsWith("{"), 30_000)).httpUrl;
  const key = await xim(["router", "api-key", "create", "--state", stateDir, "--json"], env);
  assert.equal(key.code, 0, key.stderr);
  apiKey = JSON.parse(key.stdout).key;
});

after(async () => {
  await node?.stop();
  await router?.stop();
  rmSync(home, { recursive: true, force: true });
});

describe("xim router nodes revoke with real processes", { timeout: 180_000 }, () => {
  test("a node revoked while streaming: the stream ends with node_revoked, the node exits 13, the listing shows it revoked, new requests never reach it", async () => {
    const created = await xim(["router", "join-key", "create", "--state", stateDir, "--json"], env);
    assert.equal(created.code, 0, created.stderr);
    node = startNode({ XEROTIER_AGENT_JOIN_KEY: JSON.parse(created.stdout).key });
    const serving = await waitFor(
      async () => (await nodes()).find((n) => n.state === "ready" && n.models.includes("xim-sim")),
      { timeoutMs: 60_000, what: "the node to serve xim-sim", stopIf: () => node?.child.exitCode !== null },
    );

    const res = await chat();
    assert.equal(res.status, 200);
    const reader = (res.body as ReadableStream<Uint8Array>).getReader();
    let text = "";
    const first = await reader.read();
    assert.equal(first.done, false, "the stream has begun");
    text += Buffer.from(first.value ?? []).toString();

    // The operator revokes by an id prefix, from a third process.
    const revoke = await xim(
      ["router", "nodes", "revoke", serving.nodeId.slice(0, 12), "--state", stateDir, "--json"],
      env,
    );
    assert.equal(revoke.code, 0, revoke.stderr);
    const revoked = JSON.parse(revoke.stdout);
    assert.equal(revoked.nodeId, serving.nodeId);
    assert.equal(revoked.alreadyRevoked, false);

    // The rest of the stream: it ends (it would otherwise run for minutes) with the reason.
    for (;;) {
      const { value, done } = await reader.read();
      if (done) break;
      text += Buffer.from(value).toString();
    }
    assert.match(text, /"code":"node_revoked"/);
    assert.match(text, /revoked by the router's operator/);

    const exit = await exitOf(node, 60_000);
    assert.equal(exit.code, ExitCode.revoked, exit.stderr);
    assert.match(exit.stderr, /revoked this node/);
    assert.match(exit.stderr, /xim enroll --join-key xjk_\.\.\. --force/);

    const listed = (await nodes()).find((n) => n.nodeId === serving.nodeId);
    assert.equal(listed?.state, "revoked");
    assert.ok(listed?.revokedAt);
    const table = await xim(["router", "nodes", "--state", stateDir], env);
    assert.match(table.stdout, new RegExp(`${serving.nodeId}.*revoked`));
    assert.match(`${router?.stdout}${router?.stderr}`, /node revoked by the operator/);

    // A new request finds no node: the revoked one is not a candidate.
    const next = await chat();
    assert.notEqual(next.status, 200);
    await next.body?.cancel();

    // Started again with the same identity, the node is refused at registration and exits at once.
    node = startNode();
    const again = await exitOf(node, 60_000);
    assert.equal(again.code, ExitCode.revoked, again.stderr);
    assert.match(again.stderr, /enroll again/i);

    const twice = await xim(["router", "nodes", "revoke", serving.nodeId, "--state", stateDir], env);
    assert.equal(twice.code, 0, twice.stderr);
    assert.match(twice.stdout, /already revoked/);
  });

  test("revoking an unknown node id is a usage error that lists the enrolled nodes", async () => {
    const r = await xim(["router", "nodes", "revoke", "node_ffffffff", "--state", stateDir], env);
    assert.equal(r.code, ExitCode.usage, r.stderr);
    assert.match(r.stderr, /no enrolled node 'node_ffffffff'; enrolled nodes: node_/);
  });
});
