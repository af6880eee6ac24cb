/**
 * Attack (on the operator's secrets, through the output): a password in
 * HF_ENDPOINT or a manifest URL, or a token in its query string, is
 * printed in `xim pull`'s progress lines and errors, where logs and CI
 * output keep it. Every URL the pull prints goes through one redaction;
 * credentials in an address are sent as HTTP Basic, not printed.
 * Real loopback HTTP server, the real CLI entry point.
 */
import assert from "node:assert/strict";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, test } from "node:test";
import { commands } from "../../src/cli/commands.ts";
import { recordingIo } from "../../src/cli/io.ts";
import { runCli } from "../../src/cli/program.ts";
import { gitBlobSha1 } from "../../src/models/checksum.ts";
import { bytesOf, FileServer, sha256 } from "../models/helpers/file-server.ts";

const home = mkdtempSync(join(tmpdir(), "xim-pull-redact-"));
after(() => rmSync(home, { recursive: true, force: true }));
const server = new FileServer();
before(() => server.start());
after(() => server.stop());
const cli = { version: () => "0.0.0", verboseVersion: async () => "", commands };

const PASSWORD = "s3cret-Pa55word";
const TOKEN = "tok_9f8e7d6c5b4a";

async function xim(argv: string[], env: Record<string, string> = {}) {
  const rec = recordingIo(
    {
      HOME: home,
      XEROTIER_AGENT_MODEL_PULL_MAX_ATTEMPTS: "1",
      XEROTIER_AGENT_MODEL_PULL_BASE_DELAY_MS: "1",
      XEROTIER_AGENT_MODEL_PULL_MAX_DELAY_MS: "1",
      ...env,
    },
    home,
  );
  const code = await runCli(argv, rec.io, cli);
  return { code, out: rec.stdout() + rec.stderr(), stderr: rec.stderr() };
}

function withPassword(base: string): string {
  return base.replace("http://", `http://mirror-user:${PASSWORD}@`);
}

test("a password in HF_ENDPOINT is sent as Basic auth and never printed", async () => {
  const data = new TextEncoder().encode("{}");
  const COMMIT = "00112233445566778899aabbccddeeff00112233";
  server.json.set("/api/models/org/basic/revision/main", {
    sha: COMMIT,
    siblings: [{ rfilename: "config.json", size: data.byteLength, blobId: gitBlobSha1(data) }],
  });
  server.files.set(`/org/basic/resolve/${COMMIT}/config.json`, data);
  for (const json of [false, true]) {
    const r = await xim(["pull", "hf://org/basic", "--force", ...(json ? ["--json"] : [])], {
      HF_ENDPOINT: withPassword(server.base),
    });
    assert.equal(r.code, 0, r.out);
    assert.ok(!r.out.includes(PASSWORD), `the password is not printed: ${r.out}`);
  }
  const basic = `Basic ${Buffer.from(`mirror-user:${PASSWORD}`).toString("base64")}`;
  assert.ok(server.stats("/api/models/org/basic/revision/main").authorization.includes(basic));
});

test("a failing hub behind a password-carrying HF_ENDPOINT prints the error, not the password", async () => {
  const r = await xim(["pull", "hf://org/missing"], { HF_ENDPOINT: withPassword(server.base) });
  assert.equal(r.code, 1);
  assert.match(r.stderr, /HTTP 404/);
  assert.ok(!r.out.includes(PASSWORD), r.out);
});

test("an unreachable hub behind a password-carrying HF_ENDPOINT does not print the password", async () => {
  // Port 9 on loopback: nothing listens (connection refused), a network error's own text.
  const r = await xim(["pull", "hf://org/any"], { HF_ENDPOINT: `http://u:${PASSWORD}@127.0.0.1:9` });
  assert.equal(r.code, 1);
  assert.ok(!r.out.includes(PASSWORD), r.out);
});

test("a token in a manifest URL's query string is redacted in progress lines and errors", async () => {
  const data = bytesOf(512, 3);
  server.files.set("/tok/w.bin", data);
  server.json.set("/tok/manifest.json", {
    name: "tok-model",
    files: [{ path: "w.bin", size: data.byteLength, sha256: sha256(data) }],
  });
  const ok = await xim(["pull", `${server.base}/tok/manifest.json?token=${TOKEN}&v=1`]);
  assert.equal(ok.code, 0, ok.out);
  assert.ok(!ok.out.includes(TOKEN), ok.out);
  assert.match(ok.stderr, /token=\[redacted\]/);
  const missing = await xim(["pull", `${server.base}/none/manifest.json?access_token=${TOKEN}`]);
  assert.equal(missing.code, 1);
  assert.match(missing.stderr, /HTTP 404/);
  assert.ok(!missing.out.includes(TOKEN), missing.out);
});

test("a malformed source URL with a password is refused without printing the password", async () => {
  const r = await xim(["pull", `http://user:${PASSWORD}@[::1/manifest.json`]);
  assert.equal(r.code, 2);
  assert.ok(!r.out.includes(PASSWORD), r.out);
});
