/**
 * The control plane end to end, with real processes: `xim router serve`
 * over HTTPS with its self-signed certificate, `xim enroll`, `xim run`
 * holding a CURVE lease, a SIGSTOP/SIGCONT of the node and a SIGKILL and
 * restart of the router. Lease settings are short (renew 300 ms, lease
 * 3000 ms) but not so short that a process stalled on a loaded machine loses
 * its lease between two checks (a 1000 ms lease did); waits are generous
 * (several lease durations) because two shared cores can stall a process for
 * a while.
 *
 * Time: about 35 s on an idle 2-core machine, nearly all of it starts of
 * Node running TypeScript (13 processes); 74 to 87 s were seen alone under
 * a load of 20. The suite's limit, 240 s, leaves room for CI's two test
 * files at once on 2 cores on top of that.
 */
import assert from "node:assert/strict";
import { mkdtempSync, readFileSync, rmSync, statSync } from "node:fs";
import { createServer } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, test } from "node:test";
import { ExitCode, XimError } from "../../src/core/errors.ts";
import { silentLogger } from "../../src/core/log.ts";
import { enroll } from "../../src/enrollment/enroll.ts";
import { pingRouter } from "../../src/enrollment/ping.ts";
import { loadEnrollmentState } from "../../src/enrollment/state.ts";
import { encodeJoinKey, parseJoinKey } from "../../src/protocol/join-key.ts";
import { loadIdentity } from "../../src/router/identity.ts";
import { createJoinKey } from "../../src/router/join-keys.ts";
import { listNodes, type NodeListing } from "../../src/router/nodes.ts";
import { RouterStore } from "../../src/router/store.ts";
import { generateCurveKeyPair } from "../../src/transport/curve.ts";
import { baseEnv, waitFor, XimProcess, xim } from "../router/harness.ts";

const home = mkdtempSync(join(tmpdir(), "xim-e2e-cp-"));
const stateDir = join(home, "router");
const env = baseEnv(home);
const logger = silentLogger();
const LEASE = { XEROTIER_AGENT_LEASE_RENEWAL_INTERVAL_MS: "300", XEROTIER_AGENT_LEASE_DURATION_MS: "3000" };

let router: XimProcess | undefined;
let node: XimProcess | undefined;
let endpoints: { enrollUrl: string; control: string; streaming: string };
let store: RouterStore;

function port(url: string): string {
  return url.slice(url.lastIndexOf(":") + 1);
}

function startRouter(ports?: { enroll: string; control: string; streaming: string }): XimProcess {
  return new XimProcess(
    [
      "router",
      "serve",
      "--state",
      stateDir,
      "--enroll-listen",
      `127.0.0.1:${ports?.enroll ?? 0}`,
      "--control-bind",
      `tcp://127.0.0.1:${ports?.control ?? 0}`,
      "--streaming-bind",
      `tcp://127.0.0.1:${ports?.streaming ?? 0}`,
      "--http-host",
      "127.0.0.1",
      "--http-port",
      "0",
      "--json",
    ],
    env,
  );
}

async function expectEnrollError(p: Promise<unknown>, exitCode: number, pattern: RegExp): Promise<XimError> {
  try {
    await p;
  } catch (err) {
    assert.ok(err instanceof XimError, `expected XimError, got ${String(err)}`);
    assert.equal(err.exitCode, exitCode, `exit code for: ${err.message}`);
    assert.match(err.message, pattern);
    return err;
  }
  assert.fail("expected enrollment to fail");
}

function nodeRow(nodeId: string): NodeListing | undefined {
  return listNodes(store).find((n) => n.nodeId === nodeId);
}

async function cliNodes(): Promise<NodeListing[]> {
  const r = await xim(["router", "nodes", "--state", stateDir, "--json"], env);
  assert.equal(r.code, 0, r.stderr);
  return (JSON.parse(r.stdout) as { nodes: NodeListing[] }).nodes;
}

describe("control plane with real processes", { timeout: 240_000 }, () => {
  let key: string;
  let nodeId: string;
  const nodeDir = join(home, "node-config");

  before(async () => {
    const init = await xim(["router", "init", "--state", stateDir, "--json"], env);
    assert.equal(init.code, 0, init.stderr);
    router = startRouter();
    endpoints = JSON.parse(await router.line((l) => l.startsWith("{"), 20_000));
    store = await RouterStore.open(stateDir);
  });

  after(async () => {
    await node?.stop();
    await router?.stop();
    store?.close();
    rmSync(home, { recursive: true, force: true });
  });

  test("xim enroll over HTTPS with the router's self-signed certificate writes private state", async () => {
    const created = await xim(
      [
        "router",
        "join-key",
        "create",
        "--state",
        stateDir,
        "--uses",
        "1",
        "--ttl",
        "1h",
        "--labels",
        "zone=a",
        "--json",
      ],
      env,
    );
    assert.equal(created.code, 0, created.stderr);
    key = JSON.parse(created.stdout).key;
    assert.match(key, /^xjk_default_[A-Za-z0-9_-]+$/);

    const r = await xim(["enroll", "--json"], {
      ...env,
      XEROTIER_AGENT_JOIN_KEY: key,
      XEROTIER_AGENT_CONFIG_DIR: nodeDir,
    });
    assert.equal(r.code, 0, r.stderr);
    const out = JSON.parse(r.stdout);
    assert.match(out.nodeId, /^node_[0-9a-f]{24}$/);
    assert.equal(out.router, endpoints.enrollUrl);
    assert.equal(out.statePath, join(nodeDir, "enrollment.json"));
    nodeId = out.nodeId;

    assert.equal(statSync(nodeDir).mode & 0o777, 0o700);
    for (const f of ["enrollment.json", "curve.key"])
      assert.equal(statSync(join(nodeDir, f)).mode & 0o777, 0o600, f);
    const state = await loadEnrollmentState(nodeDir);
    assert.equal(state?.controlEndpoint, endpoints.control);
    assert.equal(state?.labels.zone, "a");
    assert.ok(
      !readFileSync(join(nodeDir, "enrollment.json"), "utf8").includes(state?.keys.secretKey ?? "-"),
      "the secret key stays out of enrollment.json",
    );
    assert.equal(
      store.getNode(nodeId)?.publicKey,
      state?.keys.publicKey,
      "the router recorded the node's public key",
    );
    assert.ok(!r.stderr.includes(key), "the join key never reaches a log line");
  });

  test("a second enroll on an enrolled node is refused and changes nothing", async () => {
    const before = readFileSync(join(nodeDir, "enrollment.json"), "utf8");
    const r = await xim(["enroll", "--join-key", key, "--json"], {
      ...env,
      XEROTIER_AGENT_CONFIG_DIR: nodeDir,
    });
    assert.equal(r.code, ExitCode.alreadyEnrolled);
    assert.match(r.stderr, /already enrolled/);
    assert.deepEqual(
      JSON.parse(r.stdout).error.exitCode,
      ExitCode.alreadyEnrolled,
      "--json reports failures as JSON too",
    );
    assert.equal(readFileSync(join(nodeDir, "enrollment.json"), "utf8"), before);
  });

  test("a used, an expired, a malformed and a tampered key each get their own error", async () => {
    const fresh = () => join(home, `n-${Math.random().toString(36).slice(2)}`);
    const base = { allowInsecure: false, logger };
    await expectEnrollError(
      enroll({ ...base, joinKey: key, configDir: fresh() }),
      ExitCode.usedKey,
      /used up/,
    );

    const identity = loadIdentity(store);
    // The shortest lifetime a key may have, minted as if two minutes ago: expired now.
    const expired = createJoinKey(store, identity, {
      project: "default",
      uses: 1,
      ttlMs: 60_000,
      labels: {},
      now: Date.now() - 120_000,
    });
    await new Promise((r) => setTimeout(r, 10));
    await expectEnrollError(
      enroll({ ...base, joinKey: expired.key, configDir: fresh() }),
      ExitCode.expiredKey,
      /expired/,
    );

    await expectEnrollError(
      enroll({ ...base, joinKey: `${key.slice(0, -6)}`, configDir: fresh() }),
      ExitCode.malformedKey,
      /malformed \((checksum|token)\)/,
    );
    await expectEnrollError(
      enroll({ ...base, joinKey: key.replace("xjk_default_", "xjk_Default_"), configDir: fresh() }),
      ExitCode.malformedKey,
      /malformed \(project\)/,
    );

    const good = createJoinKey(store, identity, {
      project: "default",
      uses: 1,
      ttlMs: 3_600_000,
      labels: {},
    });
    const parts = parseJoinKey(good.key);
    assert.ok(parts.ok);
    const tampered = encodeJoinKey({ ...parts.key, tlsPin: "ab".repeat(32) });
    await expectEnrollError(
      enroll({ ...base, joinKey: tampered, configDir: fresh() }),
      ExitCode.fingerprint,
      /does not match the join key's pin/,
    );
    assert.equal(
      store.listJoinKeys().find((k) => k.id === good.row.id)?.uses,
      0,
      "an impostor check happens before the key is sent",
    );
    // The router knows its own CURVE key: it refuses such a key before spending a use (the node's
    // own check of the answer, exit 10, still guards against a router that accepts it).
    const wrongCurve = encodeJoinKey({ ...parts.key, curvePin: "cd".repeat(32) });
    await expectEnrollError(
      enroll({ ...base, joinKey: wrongCurve, configDir: fresh() }),
      ExitCode.malformedKey,
      /CURVE pin is not this router's/,
    );
    assert.equal(store.listJoinKeys().find((k) => k.id === good.row.id)?.uses, 0, "no use spent");

    await expectEnrollError(
      enroll({
        ...base,
        joinKey: good.key,
        routerUrl: endpoints.enrollUrl.replace("https:", "http:"),
        configDir: fresh(),
      }),
      ExitCode.insecure,
      /plain HTTP/,
    );
    const closed = createServer();
    await new Promise<void>((r) => closed.listen(0, "127.0.0.1", r));
    const closedPort = (closed.address() as { port: number }).port;
    await new Promise<void>((r) => closed.close(() => r()));
    await expectEnrollError(
      enroll({
        ...base,
        joinKey: good.key,
        routerUrl: `https://127.0.0.1:${closedPort}`,
        configDir: fresh(),
      }),
      ExitCode.unreachable,
      /connection refused/,
    );
  });

  test("pingRouter: the enrolled key gets a pong, a key that never enrolled cannot complete the handshake", async () => {
    const state = await loadEnrollmentState(nodeDir);
    assert.ok(state);
    const ok = await pingRouter(state, { timeoutMs: 5000 });
    assert.equal(ok.ok, true, ok.message ?? "");
    assert.ok(typeof ok.rttMs === "number" && ok.rttMs >= 0);
    const stranger = await pingRouter({ ...state, keys: generateCurveKeyPair() }, { timeoutMs: 1500 });
    assert.equal(stranger.ok, false);
    assert.equal(stranger.error, "auth", stranger.message ?? "");
    await waitFor(() => (store.counters().zapRefused ?? 0) > 0, {
      timeoutMs: 5000,
      what: "the zapRefused counter to be saved",
    });
  });

  test("xim run holds a lease: ready -> expired on SIGSTOP -> ready again on SIGCONT, with a new epoch", async () => {
    node = new XimProcess(["run"], {
      ...env,
      ...LEASE,
      XEROTIER_AGENT_CONFIG_DIR: nodeDir,
      XEROTIER_AGENT_MAX_CONCURRENT: "3",
    });
    const first = await waitFor(() => nodeRow(nodeId)?.leaseState === "ready" && nodeRow(nodeId), {
      timeoutMs: 20_000,
      what: "the node to be ready",
      stopIf: () => node?.child.exitCode !== null,
    });
    const shown = (await cliNodes()).find((n) => n.nodeId === nodeId);
    assert.equal(shown?.leaseState, "ready");
    assert.equal(shown?.maxConcurrent, 3);
    assert.ok(Number(shown?.hardware?.cpus) > 0, "the registration's hardware summary is kept");

    node.signal("SIGSTOP");
    // The lease is 3000 ms; 20 s leaves room for a slow machine.
    await waitFor(() => nodeRow(nodeId)?.state === "offline", {
      timeoutMs: 20_000,
      what: "the router to mark the stopped node expired",
    });
    assert.equal((await cliNodes()).find((n) => n.nodeId === nodeId)?.state, "offline");

    node.signal("SIGCONT");
    const back = await waitFor(
      () =>
        nodeRow(nodeId)?.leaseState === "ready" &&
        (nodeRow(nodeId)?.epoch ?? 0) > first.epoch &&
        nodeRow(nodeId),
      {
        timeoutMs: 15_000,
        what: "the node to register again after SIGCONT",
      },
    );
    assert.ok(back.epoch > first.epoch);
    assert.equal((await cliNodes()).find((n) => n.nodeId === nodeId)?.leaseState, "ready");
  });

  test("the router is killed mid-lease and restarted: the node re-registers with a new epoch within the backoff bound", async () => {
    const before = await waitFor(() => nodeRow(nodeId)?.leaseState === "ready" && nodeRow(nodeId), {
      timeoutMs: 15_000,
      what: "the node to hold its lease",
    });
    router?.signal("SIGKILL");
    await router?.exited;
    await new Promise((r) => setTimeout(r, 1500));
    router = startRouter({
      enroll: port(endpoints.enrollUrl),
      control: port(endpoints.control),
      streaming: port(endpoints.streaming),
    });
    await router.line((l) => l.startsWith("{"), 20_000);
    // The node's next renewal reaches the new router, which does not know the lease: the node
    // registers again at once. Had the node lost its lease meanwhile (3 s of silence), its
    // reconnect backoff (300 ms * 2^n, full jitter) is at most a few seconds by now. 30 s is
    // that many times over, for a loaded machine.
    const after = await waitFor(
      () =>
        (nodeRow(nodeId)?.epoch ?? 0) > (before?.epoch ?? 0) &&
        nodeRow(nodeId)?.leaseState === "ready" &&
        nodeRow(nodeId),
      {
        timeoutMs: 30_000,
        what: "re-registration after the router restart",
      },
    );
    assert.ok(after.epoch > (before?.epoch ?? 0));
    assert.equal(node?.child.exitCode, null, "the node process stayed up");
  });

  test("container entrypoint: with XEROTIER_AGENT_JOIN_KEY and no state, xim run enrolls; the next start reuses the state", async () => {
    const dir = join(home, "entrypoint-config");
    const joinKey = createJoinKey(store, loadIdentity(store), {
      project: "default",
      uses: 1,
      ttlMs: 3_600_000,
      labels: {},
    }).key;
    const runEnv = { ...env, ...LEASE, XEROTIER_AGENT_CONFIG_DIR: dir, XEROTIER_AGENT_JOIN_KEY: joinKey };
    const first = new XimProcess(["run"], runEnv);
    try {
      const id = await waitFor(async () => (await loadEnrollmentState(dir))?.nodeId, {
        timeoutMs: 20_000,
        what: "enrollment by xim run",
        stopIf: () => first.child.exitCode !== null,
      });
      const one = await waitFor(() => nodeRow(id)?.leaseState === "ready" && nodeRow(id), {
        timeoutMs: 15_000,
        what: "first start ready",
      });
      assert.equal((await first.stop()).code, 0);
      // The key is used up now: a second start must not try to enroll again.
      const second = new XimProcess(["run"], runEnv);
      try {
        const two = await waitFor(
          () => (nodeRow(id)?.epoch ?? 0) > one.epoch && nodeRow(id)?.leaseState === "ready" && nodeRow(id),
          {
            timeoutMs: 20_000,
            what: "second start ready with the saved identity",
            stopIf: () => second.child.exitCode !== null,
          },
        );
        assert.equal(two.nodeId, id);
      } finally {
        assert.equal((await second.stop()).code, 0, second.stderr.slice(-2000));
      }
    } finally {
      await first.stop();
    }
  });

  test("SIGTERM: the node drains, releases its lease and exits 0", async () => {
    const done = await node?.stop(10_000);
    assert.equal(done?.code, 0, done?.stderr.slice(-2000) ?? "");
    // A node that gave its lease back is listed as stopped, not expired.
    await waitFor(() => nodeRow(nodeId)?.state === "stopped", {
      timeoutMs: 5000,
      what: "the released lease",
    });
    assert.match(nodeRow(nodeId)?.stateReason ?? "", /released/);
    assert.equal(nodeRow(nodeId)?.engine, "-", "a stopped node shows no engine state");
    const stopped = await router?.stop(10_000);
    assert.equal(stopped?.code, 0, stopped?.stderr.slice(-2000) ?? "");
  });
});
