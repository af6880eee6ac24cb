/**
 * Attack: a peer (an enrolled node, a router, an engine) puts terminal
 * control sequences in a string that an operator's command later prints:
 * a host name that clears the screen, retitles the window, forges a table
 * row, or reverses text with a bidi override. Every CLI output must reach
 * the terminal without one control character a peer chose, while --json
 * keeps the value exact (JSON.parse gives back the same string). Real
 * processes where a peer is involved: `xim router serve`, a node (`xim
 * enroll`, `xim run`) whose os.hostname() answers the evil name (a preload,
 * tests/fixtures/set-hostname.ts), a plain-HTTP router double for `xim
 * enroll`. Waits are generous bounds (two shared cores).
 */
import assert from "node:assert/strict";
import { randomBytes } from "node:crypto";
import { mkdtempSync, rmSync } from "node:fs";
import http from "node:http";
import https from "node:https";
import type { AddressInfo } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { Writable } from "node:stream";
import { after, before, describe, test } from "node:test";
import * as v from "valibot";
import { loopbackServeArgs } from "../../scripts/lib/loopback-router.ts";
import { commands } from "../../src/cli/commands.ts";
import { recordingIo } from "../../src/cli/io.ts";
import { terminalSafe } from "../../src/cli/output.ts";
import { runCli } from "../../src/cli/program.ts";
import { verboseVersion, versionLine } from "../../src/cli/version.ts";
import { createLogger } from "../../src/core/log.ts";
import { encodeJoinKey } from "../../src/protocol/join-key.ts";
import { EnrollRequestSchema, HardwareSchema } from "../../src/protocol/messages.ts";
import { PROTOCOL_VERSION } from "../../src/protocol/version.ts";
import { RouterStore } from "../../src/router/store.ts";
import { generateCurveKeyPair } from "../../src/transport/curve.ts";
import { baseEnv, REPO, waitFor, XimProcess, xim } from "../router/harness.ts";

/** Clears the screen, homes the cursor, retitles the window (OSC), an 8-bit CSI, a bidi override, and a forged row. */
const EVIL =
  "evil\u001b[2J\u001b[1;1H\u001b]0;pwned\u0007-\u009b31m-\u202edesrever\u202c-\u007f\rnode_forged  default  fake-host\nx";

/** The characters a peer must never get to a terminal: C0 but tab and newline, DEL, C1, bidi controls. */
const UNSAFE = /[\u0000-\u0008\u000b-\u001f\u007f-\u009f\u202a-\u202e\u2066-\u2069]/u;

function assertTerminalSafe(text: string, what: string): void {
  const hit = UNSAFE.exec(text);
  assert.equal(
    hit,
    null,
    `${what} printed U+${hit?.[0].codePointAt(0)?.toString(16).padStart(4, "0")} at ${hit?.index}: ${JSON.stringify(text.slice(Math.max(0, (hit?.index ?? 0) - 40), (hit?.index ?? 0) + 40))}`,
  );
}

const home = mkdtempSync(join(tmpdir(), "xim-terminal-"));
after(() => rmSync(home, { recursive: true, force: true }));

async function cli(env: Record<string, string | undefined>, ...argv: string[]) {
  const rec = recordingIo({ HOME: home, XEROTIER_AGENT_LOG_LEVEL: "error", ...env }, home);
  const code = await runCli(argv, rec.io, { version: versionLine, verboseVersion, commands });
  return { code, stdout: rec.stdout(), stderr: rec.stderr() };
}

// A dozen `xim` processes, each a few seconds to start on two shared cores: a generous bound.
describe("terminal escapes from a node's host name", { timeout: 300_000 }, () => {
  const stateDir = join(home, "router");
  const env = baseEnv(home);
  let router: XimProcess | undefined;
  let node: XimProcess | undefined;
  let enrollUrl: string;

  before(async () => {
    const init = await xim(["router", "init", "--state", stateDir], env);
    assert.equal(init.code, 0, init.stderr);
    router = new XimProcess(loopbackServeArgs(stateDir), env);
    enrollUrl = JSON.parse(await router.line((l) => l.startsWith("{"), 30_000)).enrollUrl;
  });

  after(async () => {
    await node?.stop();
    await router?.stop();
  });

  async function createKey(): Promise<{ key: string; id: string }> {
    const r = await xim(["router", "join-key", "create", "--state", stateDir, "--json"], env);
    assert.equal(r.code, 0, r.stderr);
    return JSON.parse(r.stdout);
  }

  test("a node whose host name carries escapes is listed by `xim router nodes` without one control byte", async () => {
    const { key } = await createKey();
    const nodeEnv = {
      ...env,
      NODE_OPTIONS: `--import=${join(REPO, "tests", "fixtures", "set-hostname.ts")}`,
      XIM_TEST_HOSTNAME: JSON.stringify(EVIL),
      XEROTIER_AGENT_CONFIG_DIR: join(home, "evil-node"),
      XEROTIER_AGENT_ENGINE: "sim",
      XEROTIER_AGENT_DISABLE_METRICS_SERVER: "1",
      XEROTIER_AGENT_LEASE_RENEWAL_INTERVAL_MS: "200",
      XEROTIER_AGENT_LEASE_DURATION_MS: "3000",
    };
    const enrolled = await xim(["enroll", "--json"], { ...nodeEnv, XEROTIER_AGENT_JOIN_KEY: key });
    assert.equal(enrolled.code, 0, enrolled.stderr);
    const nodeId = JSON.parse(enrolled.stdout).nodeId as string;
    // The node must still register (its hardware report carries the host name too).
    node = new XimProcess(["run"], nodeEnv);
    await waitFor(
      async () => {
        const r = await xim(["router", "nodes", "--state", stateDir, "--json"], env);
        const n = (JSON.parse(r.stdout) as { nodes: { nodeId: string; state: string }[] }).nodes.find(
          (x) => x.nodeId === nodeId,
        );
        return n?.state === "ready" || n?.state === "registered";
      },
      {
        timeoutMs: 60_000,
        what: `the node to register (node stderr: ${node.stderr.slice(-1500)})`,
        stopIf: () => node?.child.exitCode !== null,
      },
    );

    const text = await xim(["router", "nodes", "--state", stateDir], env);
    assert.equal(text.code, 0, text.stderr);
    assertTerminalSafe(text.stdout, "xim router nodes");
    const rows = text.stdout.split("\n").filter((l) => l.startsWith("node_"));
    assert.equal(rows.length, 1, `one row, no forged row:\n${text.stdout}`);
    assert.match(rows[0], /evil/);
    assert.ok(rows[0].startsWith(nodeId), "the one row is the real node's");

    const json = await xim(["router", "nodes", "--state", stateDir, "--json"], env);
    assertTerminalSafe(json.stdout, "xim router nodes --json");
  });

  test("an enrollment whose host name or version carries control characters is refused and spends nothing", async () => {
    const { key, id } = await createKey();
    for (const field of ["hostname", "agentVersion"]) {
      const body = JSON.stringify({
        protocolVersion: PROTOCOL_VERSION,
        joinKey: key,
        nodePublicKey: generateCurveKeyPair().publicKey,
        hostname: "good-host",
        agentVersion: "0.0.0",
        [field]: `x\u001b]0;pwned\u0007\u009b2J`,
      });
      const answer = await new Promise<{ status: number; body: string }>((resolve, reject) => {
        // The router's certificate is self-signed; this client is the attacker, it pins nothing.
        const req = https.request(
          `${enrollUrl}/v1/enroll`,
          {
            method: "POST",
            rejectUnauthorized: false,
            headers: { "content-type": "application/json" },
            timeout: 30_000,
          },
          (res) => {
            let text = "";
            res.on("data", (d: Buffer) => {
              text += d.toString();
            });
            res.on("end", () => resolve({ status: res.statusCode ?? 0, body: text }));
          },
        );
        req.on("error", reject);
        req.end(body);
      });
      assert.equal(answer.status, 400, answer.body);
      assert.equal(JSON.parse(answer.body).error.code, "malformed_request");
      assert.match(JSON.parse(answer.body).error.message, new RegExp(field));
    }
    const list = await xim(["router", "join-key", "list", "--state", stateDir, "--json"], env);
    const row = (JSON.parse(list.stdout) as { joinKeys: { id: string; uses: number }[] }).joinKeys.find(
      (k) => k.id === id,
    );
    assert.equal(row?.uses, 0, "the refused enrollments spent no use");
  });

  test("the wire schemas refuse unprintable descriptive strings from a node", () => {
    const hardware = { hostname: "h", platform: "linux", arch: "x64", cpus: 1, memoryBytes: 1, gpus: [] };
    assert.ok(v.safeParse(HardwareSchema, hardware).success);
    for (const change of [
      { hostname: EVIL },
      { platform: "linux\u202e" },
      { arch: "x64\u0085" },
      { gpus: [{ name: "H100\u001b[8m", memoryBytes: 1 }] },
      { hostname: "h".repeat(257) },
    ])
      assert.equal(
        v.safeParse(HardwareSchema, { ...hardware, ...change }).success,
        false,
        JSON.stringify(change),
      );
    const enroll = {
      protocolVersion: PROTOCOL_VERSION,
      joinKey: "xjk_x_y",
      nodePublicKey: generateCurveKeyPair().publicKey,
      hostname: "gpu-01.example.com",
      agentVersion: "1.2.3",
    };
    assert.ok(v.safeParse(EnrollRequestSchema, enroll).success);
    assert.equal(v.safeParse(EnrollRequestSchema, { ...enroll, hostname: EVIL }).success, false);
  });
});

describe("terminal escapes in stored peer strings (state written by an older xim)", () => {
  const state = join(home, "old-state");

  before(async () => {
    const init = await cli({}, "router", "init", "--state", state);
    assert.equal(init.code, 0, init.stderr);
    const store = await RouterStore.open(state);
    try {
      // What an older router stored without checking: every peer-supplied column of a node.
      store.insertJoinKey({
        id: "jk_old",
        hash: "a".repeat(64),
        project: "default",
        usesAllowed: 1,
        uses: 0,
        expiresAt: null,
        labels: { zone: EVIL },
        createdAt: Date.now(),
        revokedAt: null,
      });
      const enrolled = store.enrollNode({
        hash: "a".repeat(64),
        project: "default",
        nodeId: `node_${"1".repeat(24)}`,
        publicKey: "pk",
        hostname: EVIL,
        agentVersion: EVIL,
        now: Date.now(),
      });
      assert.ok(enrolled.ok);
      store.startLease(`node_${"1".repeat(24)}`, "l".repeat(32), 3000, Date.now(), {
        state: "ready",
        models: [EVIL, "ok-model"],
        maxConcurrent: 1,
        freeSlots: 1,
        engine: EVIL,
      });
      store.updateLease(`node_${"1".repeat(24)}`, { stateReason: EVIL });
      store.assignModel(`node_${"1".repeat(24)}`, "m", "a1", Date.now());
      store.recordModelProgress(`node_${"1".repeat(24)}`, "a1", {
        state: "failed",
        bytesDone: 0,
        bytesTotal: 0,
        message: EVIL,
        at: Date.now(),
      });
    } finally {
      store.close();
    }
  });

  test("router nodes and join-key list print the strings defanged; --json keeps them exact", async () => {
    for (const argv of [
      ["router", "nodes", "--state", state],
      ["router", "join-key", "list", "--state", state],
    ]) {
      const r = await cli({}, ...argv);
      assert.equal(r.code, 0, r.stderr);
      assertTerminalSafe(r.stdout, argv.join(" "));
      assert.equal(
        r.stdout.trimEnd().split("\n").length,
        2,
        `no forged row in ${argv.join(" ")}:\n${r.stdout}`,
      );
    }
    const json = await cli({}, "router", "nodes", "--state", state, "--json");
    assert.equal(json.code, 0, json.stderr);
    assertTerminalSafe(json.stdout, "router nodes --json");
    const [n] = JSON.parse(json.stdout).nodes;
    assert.equal(n.hostname, EVIL, "--json gives back the stored bytes exactly");
    assert.deepEqual(n.models, [EVIL, "ok-model"]);
    assert.equal(n.assignment.progress.message, EVIL);
    const keys = await cli({}, "router", "join-key", "list", "--state", state, "--json");
    assertTerminalSafe(keys.stdout, "join-key list --json");
    assert.equal(JSON.parse(keys.stdout).joinKeys[0].labels.zone, EVIL);
  });
});

describe("terminal escapes in a router's answer to `xim enroll`", { timeout: 30_000 }, () => {
  let server: http.Server;
  let url: string;

  before(async () => {
    // A router double over plain HTTP: refuses every key with an evil message.
    server = http.createServer((req, res) => {
      req.resume();
      req.on("end", () => {
        const body = JSON.stringify({ error: { code: "unknown_key", message: EVIL, upgrade: null } });
        res.writeHead(401, { "content-type": "application/json" }).end(body);
      });
    });
    await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
    url = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  });
  after(() => new Promise<void>((resolve) => server.close(() => resolve())));

  test("the router's error message reaches stderr (and --json) without a control byte", async () => {
    const key = encodeJoinKey({
      project: "default",
      secret: randomBytes(16),
      tlsPin: "0".repeat(64),
      curvePin: "0".repeat(64),
      url,
    });
    const env = {
      XEROTIER_AGENT_JOIN_KEY: key,
      XEROTIER_AGENT_ALLOW_INSECURE: "1",
      XEROTIER_AGENT_CONFIG_DIR: join(home, "enroll-node"),
    };
    for (const argv of [["enroll"], ["enroll", "--json"]]) {
      const r = await cli(env, ...argv);
      assert.equal(r.code, 7, r.stderr);
      assert.match(r.stderr, /does not know this join key: evil/);
      assertTerminalSafe(r.stderr, `${argv.join(" ")} stderr`);
      assertTerminalSafe(r.stdout, `${argv.join(" ")} stdout`);
      assert.equal(
        r.stderr
          .trimEnd()
          .split("\n")
          .filter((l) => l.startsWith("xim:")).length,
        1,
      );
    }
  });
});

describe("terminal escapes in human log output", () => {
  test("a peer string in a pretty log line (message and fields) carries no control character", () => {
    let out = "";
    const sink = new Writable({
      write(chunk, _enc, done) {
        out += chunk.toString();
        done();
      },
    });
    const logger = createLogger({ level: "info", pretty: true, destination: sink });
    logger.warn({ hostname: EVIL, nested: { reason: EVIL } }, `registration refused: ${EVIL}`);
    logger.flush?.();
    assert.match(out, /registration refused: evil/);
    assertTerminalSafe(out.replaceAll("\n", ""), "pretty log");
  });
});

describe("the output guard every command prints through", () => {
  test("control characters are escaped losslessly: JSON text stays the same JSON", () => {
    const json = `${JSON.stringify({ hostname: EVIL, list: [EVIL] })}\n`;
    const guarded = terminalSafe(json);
    assertTerminalSafe(guarded, "guarded JSON");
    assert.deepEqual(JSON.parse(guarded), { hostname: EVIL, list: [EVIL] });
    assert.equal(terminalSafe("plain text\n\twith a tab\n"), "plain text\n\twith a tab\n");
  });

  test("only xim's own colours pass, and only when colour is on", () => {
    const painted = "\u001b[31;1m✗\u001b[0m failed";
    assert.equal(terminalSafe(painted, true), painted);
    assertTerminalSafe(terminalSafe(painted), "colour off");
    for (const foreign of ["\u001b[8m", "\u001b[30;40m", "\u001b[2J", "\u001b]0;t\u0007", "\u009b31m"])
      assertTerminalSafe(terminalSafe(`a${foreign}b`, true), JSON.stringify(foreign));
  });
});
