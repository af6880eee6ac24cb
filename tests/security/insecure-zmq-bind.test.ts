/**
 * `xim router serve --insecure-zmq` runs ZeroMQ with no encryption and no
 * authentication, so it binds to loopback only: a non-loopback bind needs
 * `--insecure-zmq-allow-remote` as well, and the refusal comes before any
 * socket is bound. On loopback it starts, and says loudly what the mode
 * does not protect. Real `xim` processes; only loopback traffic.
 */
import assert from "node:assert/strict";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, test } from "node:test";
import { baseEnv, XimProcess, xim } from "../router/harness.ts";

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
