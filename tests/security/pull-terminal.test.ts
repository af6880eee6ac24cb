/**
 * Attack (on the operator's terminal): a model source puts escape
 * sequences (set the window title, clear the screen, move the cursor, hide
 * text) or bidi overrides in what `xim pull` prints: an error body, a
 * retry reason, a model name, the router's error message. What reaches the
 * terminal is made inert first. Real loopback HTTP server and ZeroMQ.
 */
import assert from "node:assert/strict";
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, test } from "node:test";
import { commands } from "../../src/cli/commands.ts";
import { recordingIo } from "../../src/cli/io.ts";
import { runCli } from "../../src/cli/program.ts";
import { ModelLibrary } from "../../src/models/library.ts";
import { pullModel } from "../../src/models/pull.ts";
import type { PullError } from "../../src/models/source.ts";
import { RouterSource } from "../../src/models/sources/router.ts";
import { bytesOf, FileServer, sha256 } from "../models/helpers/file-server.ts";
import { modelChannel, modelRouter } from "../models/helpers/zmq-channel.ts";

const home = mkdtempSync(join(tmpdir(), "xim-pull-terminal-"));
after(() => rmSync(home, { recursive: true, force: true }));
const server = new FileServer();
before(() => server.start());
after(() => server.stop());
const cli = { version: () => "0.0.0", verboseVersion: async () => "", commands };

/** Set the window title, clear the screen, hide the rest, reverse the text direction. */
const HOSTILE = "\u001b]0;owned\u0007\u001b[2J\u001b[8mhidden\u202eevil\u009b31m";
const CONTROLS = /[\u0000-\u0008\u000b-\u001f\u007f-\u009f\u202a-\u202e\u2066-\u2069]/;

async function xim(argv: string[]) {
  const rec = recordingIo(
    {
      HOME: home,
      XEROTIER_AGENT_MODEL_PULL_MAX_ATTEMPTS: "1",
      XEROTIER_AGENT_MODEL_PULL_BASE_DELAY_MS: "1",
      XEROTIER_AGENT_MODEL_PULL_MAX_DELAY_MS: "1",
    },
    home,
  );
  const code = await runCli(argv, rec.io, cli);
  return { code, stderr: rec.stderr(), stdout: rec.stdout() };
}

test("a server's error body with escape sequences is printed inert", async () => {
  server.faults.set("/esc/manifest.json", {
    failFirst: 100,
    status: 404,
    body: JSON.stringify({ error: `not here ${HOSTILE}` }),
  });
  const r = await xim(["pull", `${server.base}/esc/manifest.json`]);
  assert.equal(r.code, 1);
  assert.match(r.stderr, /HTTP 404.*: not here/);
  assert.doesNotMatch(r.stderr, CONTROLS, JSON.stringify(r.stderr));
});

test("a retry reason quoting a server's 503 body is printed inert", async () => {
  server.faults.set("/busy/manifest.json", { failFirst: 100, status: 503, body: `busy ${HOSTILE}` });
  const r = await xim(["pull", `${server.base}/busy/manifest.json`]);
  assert.equal(r.code, 1);
  assert.match(r.stderr, /retry 1 of 1/);
  assert.doesNotMatch(r.stderr, CONTROLS, JSON.stringify(r.stderr));
});

test("a manifest's model name with escape sequences is printed inert, also by xim pull --list", async () => {
  const data = bytesOf(100, 2);
  server.files.set("/named/w.bin", data);
  server.json.set("/named/manifest.json", {
    name: `model${HOSTILE}`,
    files: [{ path: "w.bin", size: data.byteLength, sha256: sha256(data) }],
  });
  const r = await xim(["pull", `${server.base}/named/manifest.json`]);
  assert.equal(r.code, 0, r.stderr);
  assert.doesNotMatch(r.stderr, CONTROLS, JSON.stringify(r.stderr));
  assert.doesNotMatch(r.stdout, CONTROLS, JSON.stringify(r.stdout));
  const list = await xim(["pull", "--list"]);
  assert.equal(list.code, 0, list.stderr);
  assert.match(list.stdout, /model/);
  assert.doesNotMatch(list.stdout, CONTROLS, JSON.stringify(list.stdout));
});

test("a router's error message with escape sequences is made inert", { timeout: 30_000 }, async () => {
  const dir = join(home, "published");
  mkdirSync(dir, { recursive: true });
  writeFileSync(join(dir, "config.json"), "{}");
  const library = new ModelLibrary(join(home, "router-state"));
  await library.add("m", dir);
  const router = await modelRouter(library, (req, reply) =>
    reply.type === "model_manifest"
      ? { type: "model_error", requestId: req.requestId, code: "not_found", message: `gone ${HOSTILE}` }
      : reply,
  );
  const node = await modelChannel(router.endpoint);
  try {
    await assert.rejects(
      pullModel({
        source: new RouterSource("m", node.channel),
        config: {
          modelCacheDir: join(home, "router-cache"),
          modelCacheMaxSizeGb: 1,
          modelPullMaxAttempts: 1,
          modelPullBaseDelayMs: 1,
          modelPullMaxDelayMs: 1,
        },
      }),
      (err: PullError) => {
        assert.match(err.message, /router: gone/);
        assert.doesNotMatch(err.message, CONTROLS, JSON.stringify(err.message));
        return true;
      },
    );
  } finally {
    await node.close();
    await router.close();
  }
});
