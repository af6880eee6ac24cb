/**
 * `xim router serve --insecure-zmq` runs ZeroMQ with no encryption and no
 * authentication, so it binds to loopback only: a non-loopback bind needs
 * `--insecure-zmq-allow-remote` as well, and the refusal comes before any
 * socket is bound. On loopback it starts, and says loudly what the mode
 * does not protect, and so does a node that connects to it. Real `xim`
 * processes and a real node session; only loopback traffic.
 */
import assert from "node:assert/strict";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { Writable } from "node:stream";
import { after, test } from "node:test";
import { runNode } from "../../src/agent/session.ts";
import { loadConfig } from "../../src/core/config/load.ts";
import { createLogger } from "../../src/core/log.ts";
import { createJoinKey } from "../../src/router/join-keys.ts";
import { Stack } from "../helpers/stack.ts";
import { baseEnv, waitFor, XimProcess, xim } from "../router/harness.ts";

const home = mkdtempSync(join(tmpdir(), "xim-insecure-bind-"));
const env = baseEnv(home);
const state = join(home, "router");
const loopback = [
  "--enroll-listen",
  "127.0.0.1:0",
  "--http-host",
  "127.0.0.1",
  "--http-port",
  "0",
  "--state",
  state,
];

after(() => rmSync(home, { recursive: true, force: true }));

test("a plain-ZeroMQ router refuses a non-loopback bind without --insecure-zmq-allow-remote", {
  timeout: 60_000,
}, async () => {
  for (const binds of [
    ["--control-bind", "tcp://0.0.0.0:0", "--streaming-bind", "tcp://127.0.0.1:0"],
    ["--control-bind", "tcp://127.0.0.1:0", "--streaming-bind", "tcp://0.0.0.0:0"],
  ]) {
    const r = await xim(["router", "serve", "--insecure-zmq", ...loopback, ...binds], env, 30_000);
    assert.equal(r.code, 2, `exit code (stderr: ${r.stderr.slice(-1000)})`);
    assert.match(r.stderr, /tcp:\/\/0\.0\.0\.0:0 is not a loopback address/);
    assert.match(r.stderr, /--insecure-zmq-allow-remote/);
    assert.doesNotMatch(r.stdout, /router serving/);
  }
});

test("a plain-ZeroMQ router on loopback starts and warns that it has no protection against an active attacker", {
  timeout: 60_000,
}, async () => {
  const p = new XimProcess(
    [
      "router",
      "serve",
      "--insecure-zmq",
      ...loopback,
      "--control-bind",
      "tcp://127.0.0.1:0",
      "--streaming-bind",
      "tcp://127.0.0.1:0",
    ],
    env,
  );
  try {
    await p.line((l) => l.includes("router serving"), 30_000);
    assert.match(
      p.stderr + p.stdout,
      /WITHOUT CURVE.*no encryption and no protection against an active attacker/,
    );
  } finally {
    await p.stop();
  }
});

test("a node connecting to a plain-ZeroMQ router warns that it has no protection against an active attacker", {
  timeout: 60_000,
}, async () => {
  const stack = await Stack.start({ plainZmq: true });
  const lines: string[] = [];
  const destination = new Writable({
    write(chunk, _enc, done) {
      lines.push(String(chunk));
      done();
    },
  });
  const stop = new AbortController();
  try {
    const { key } = createJoinKey(stack.service.store, stack.service.identity, {
      project: "default",
      uses: 1,
      ttlMs: null,
      labels: {},
    });
    const { config } = loadConfig({
      env: {
        XEROTIER_AGENT_CONFIG_DIR: join(stack.dir, "warned-node"),
        XEROTIER_AGENT_JOIN_KEY: key,
        XEROTIER_AGENT_ALLOW_INSECURE: "1",
        XEROTIER_AGENT_DISABLE_METRICS_SERVER: "1",
      },
      cwd: stack.dir,
    });
    const running = runNode({
      config,
      logger: createLogger({ level: "warn", destination, pretty: false }),
      signal: stop.signal,
    });
    await waitFor(() => lines.some((l) => /no protection against an active attacker/.test(l)), {
      timeoutMs: 30_000,
      what: "the node's warning",
    });
    const warning = JSON.parse(lines.find((l) => /active attacker/.test(l)) as string);
    assert.equal(warning.level, "warn");
    stop.abort();
    await running.catch(() => undefined);
  } finally {
    stop.abort();
    await stack.close();
  }
});
