import assert from "node:assert/strict";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, test } from "node:test";
import { commands } from "../../src/cli/commands.ts";
import { recordingIo } from "../../src/cli/io.ts";
import { runCli } from "../../src/cli/program.ts";
import { RouterStore } from "../../src/router/store.ts";
import { bytesOf, FileServer, sha256 } from "./helpers/file-server.ts";

const home = mkdtempSync(join(tmpdir(), "xim-pull-cli-"));
after(() => rmSync(home, { recursive: true, force: true }));
const server = new FileServer();
before(() => server.start());
after(() => server.stop());
const root = { version: () => "0.0.0", verboseVersion: async () => "", commands };

async function xim(argv: string[], env: Record<string, string> = {}) {
  const rec = recordingIo({ HOME: home, ...env }, home);
  const code = await runCli(argv, rec.io, root);
  return { code, stdout: rec.stdout(), stderr: rec.stderr() };
}

function publish(name: string) {
  const data = bytesOf(2048, 4);
  server.files.set(`/${name}/w.safetensors`, data);
  server.json.set(`/${name}/manifest.json`, {
    name,
    files: [{ path: "w.safetensors", size: data.byteLength, sha256: sha256(data) }],
  });
  return `${server.base}/${name}/manifest.json`;
}

test("xim pull --json prints progress events and the result as JSON lines", async () => {
  const r = await xim(["pull", publish("cli-model"), "--json"]);
  assert.equal(r.code, 0, r.stderr);
  const lines = r.stdout
    .trim()
    .split("\n")
    .map((l) => JSON.parse(l));
  const types = lines.map((l) => l.type);
  assert.equal(types[0], "manifest");
  assert.ok(types.includes("progress"));
  assert.deepEqual(types.slice(-2), ["done", "result"]);
  assert.equal(lines.at(-1).path, join(home, ".cache", "xerotier", "models", "cli-model"));
});

test("xim pull without a terminal logs plain lines and prints the model path", async () => {
  const r = await xim(["pull", publish("cli-plain"), "--model-cache-dir", join(home, "other-cache")]);
  assert.equal(r.code, 0, r.stderr);
  assert.equal(r.stdout, `${join(home, "other-cache", "cli-plain")}\n`);
  assert.match(r.stderr, /cli-plain: 1 files, 2\.0 KB from http:\/\/127\.0\.0\.1/);
  assert.match(r.stderr, /pulled cli-plain to/);
});

test("xim pull --list shows cached models, sizes and last use", async () => {
  await xim(["pull", publish("cli-listed")]);
  const r = await xim(["pull", "--list"]);
  assert.equal(r.code, 0, r.stderr);
  assert.match(r.stdout, /NAME\s+SIZE\s+LAST USED\s+IN USE\s+SOURCE/);
  assert.match(r.stdout, /cli-listed\s+2\.0 KB\s+\d{4}-\d\d-\d\dT[\d:.]+Z\s+no\s+http/);
  const j = await xim(["pull", "--list", "--json"]);
  assert.ok(JSON.parse(j.stdout).models.some((m: { name: string }) => m.name === "cli-listed"));
});

test("a refused pull exits 1 with the reason; no source is a usage error", async () => {
  const r = await xim(["pull", `${server.base}/nothing/manifest.json`]);
  assert.equal(r.code, 1);
  assert.match(r.stderr, /HTTP 404/);
  const u = await xim(["pull"]);
  assert.equal(u.code, 2);
  assert.match(u.stderr, /needs a source/);
});

test("xim router models add/list/remove publishes folders (the command spec router.ts lists)", async () => {
  const { modelsCommand } = await import("../../src/cli/router/models.ts");
  const { mkdirSync, writeFileSync } = await import("node:fs");
  const dir = join(home, "to-publish");
  mkdirSync(dir, { recursive: true });
  writeFileSync(join(dir, "config.json"), "{}");
  writeFileSync(join(dir, "model.safetensors"), bytesOf(3000));
  const state = join(home, "router-state");
  // `models` refuses a folder that holds no router: make one, as `xim router init` does.
  (await RouterStore.open(state)).close();
  const cli = {
    version: () => "0",
    verboseVersion: async () => "",
    commands: [{ name: "router", summary: "r", examples: [], subcommands: [modelsCommand] }],
  };
  const run = async (argv: string[]) => {
    const rec = recordingIo({ HOME: home }, home);
    const code = await runCli(argv, rec.io, cli);
    return { code, stdout: rec.stdout(), stderr: rec.stderr() };
  };
  const add = await run(["router", "models", "add", "pub", dir, "--state", state]);
  assert.equal(add.code, 0, add.stderr);
  assert.match(add.stdout, /published pub: 2 files, 3\.0 KB/);
  const list = await run(["router", "models", "list", "--state", state]);
  assert.match(list.stdout, /pub\s+2\s+3\.0 KB/);
  assert.equal((await run(["router", "models", "remove", "pub", "--state", state])).code, 0);
  const again = await run(["router", "models", "remove", "pub", "--state", state]);
  assert.equal(again.code, 1);
  assert.match(again.stderr, /publishes no model named pub/);
});
