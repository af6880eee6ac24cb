/**
 * API keys of the router's OpenAI API through the CLI: minted once
 * (only the hash is stored), listed without the key, revoked by id; the
 * router then refuses the key.
 */
import assert from "node:assert/strict";
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, test } from "node:test";
import { commands } from "../../src/cli/commands.ts";
import { recordingIo } from "../../src/cli/io.ts";
import { runCli } from "../../src/cli/program.ts";
import { API_KEY_CACHE_MS, lookupApiKey } from "../../src/router/api-keys.ts";
import { DB_FILE, RouterStore } from "../../src/router/store.ts";

const dir = mkdtempSync(join(tmpdir(), "xim-apikeys-"));
after(() => rmSync(dir, { recursive: true, force: true }));
const root = { version: () => "9.9.9", verboseVersion: async () => "verbose\n", commands };
const state = join(dir, "router");
// Every subcommand but init and serve refuses a folder without a router: make one.
before(async () => {
  assert.equal((await xim(["router", "init", "--state", state, "--json"])).code, 0);
});

async function xim(argv: string[]) {
  const rec = recordingIo({ HOME: dir }, dir);
  const code = await runCli(argv, rec.io, root);
  return { code, stdout: rec.stdout(), stderr: rec.stderr() };
}

test("create, list, revoke: the key maps to its project and tenant until revoked", async () => {
  const created = await xim([
    "router",
    "api-key",
    "create",
    "--state",
    state,
    "--project",
    "acme",
    "--tenant",
    "team-a",
    "--json",
  ]);
  assert.equal(created.code, 0, created.stderr);
  const { key, id } = JSON.parse(created.stdout);
  assert.match(key, /^xak_[A-Za-z0-9_-]{32}$/);
  assert.match(id, /^ak_[0-9a-f]{12}$/);

  const store = await RouterStore.open(state);
  try {
    assert.deepEqual(lookupApiKey(store, key), { id, project: "acme", tenant: "team-a" });
    assert.equal(lookupApiKey(store, `${key}x`), undefined);
  } finally {
    store.close();
  }
  assert.ok(!readFileSync(join(state, DB_FILE)).includes(Buffer.from(key)), "only the hash is stored");

  const listed = await xim(["router", "api-key", "list", "--state", state, "--json"]);
  assert.equal(listed.code, 0);
  assert.ok(!listed.stdout.includes(key));
  assert.deepEqual(
    JSON.parse(listed.stdout).apiKeys.map((k: { id: string; tenant: string }) => [k.id, k.tenant]),
    [[id, "team-a"]],
  );

  const text = await xim(["router", "api-key", "create", "--state", state, "--tenant", "bob"]);
  assert.match(text.stdout, /^xak_\S+\n$/);
  assert.match(text.stderr, /project default, tenant bob/);

  assert.equal((await xim(["router", "api-key", "revoke", "--state", state, id])).code, 0);
  const again = await RouterStore.open(state);
  try {
    assert.equal(lookupApiKey(again, key), undefined, "a revoked key is refused");
  } finally {
    again.close();
  }
  const bad = await xim(["router", "api-key", "create", "--state", state, "--tenant", "no spaces"]);
  assert.equal(bad.code, 2);
  assert.match(bad.stderr, /tenant 'no spaces' is not valid/);
});

test("a running router trusts a valid key for API_KEY_CACHE_MS; a revocation by another process takes effect after it", async () => {
  const created = await xim([
    "router",
    "api-key",
    "create",
    "--state",
    state,
    "--tenant",
    "cached",
    "--json",
  ]);
  const { key, id } = JSON.parse(created.stdout);
  const router = await RouterStore.open(state);
  try {
    const t0 = 1_000_000;
    assert.equal(lookupApiKey(router, key, t0)?.tenant, "cached");
    // The CLI revokes through its own connection (another process in real use).
    assert.equal((await xim(["router", "api-key", "revoke", "--state", state, id])).code, 0);
    assert.equal(lookupApiKey(router, key, t0 + API_KEY_CACHE_MS - 1)?.tenant, "cached", "still cached");
    assert.equal(
      lookupApiKey(router, key, t0 + API_KEY_CACHE_MS),
      undefined,
      "refused once the entry is old",
    );
    assert.equal(lookupApiKey(router, key, t0 + API_KEY_CACHE_MS + 1), undefined, "and stays refused");
  } finally {
    router.close();
  }
});
