/**
 * Attack: numbers an operator (or a script fed from elsewhere) gives to
 * `join-key create` must be bounded when the key is minted, and every
 * reader of a stored expiry must survive a value out of range. Before the
 * fix `--ttl 99999999d` stored an expiry beyond what a Date can hold and
 * every later `join-key list` crashed. The CLI runs in-process through the
 * real parser on a real router state folder.
 */
import assert from "node:assert/strict";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, test } from "node:test";
import { commands } from "../../src/cli/commands.ts";
import { recordingIo } from "../../src/cli/io.ts";
import { runCli } from "../../src/cli/program.ts";
import { verboseVersion, versionLine } from "../../src/cli/version.ts";
import { RouterStore } from "../../src/router/store.ts";

const home = mkdtempSync(join(tmpdir(), "xim-jk-ttl-"));
const state = join(home, "state");

async function run(...argv: string[]) {
  const rec = recordingIo({ HOME: home, XEROTIER_AGENT_LOG_LEVEL: "error" }, home);
  const code = await runCli(argv, rec.io, { version: versionLine, verboseVersion, commands });
  return { code, stdout: rec.stdout(), stderr: rec.stderr() };
}

function create(...extra: string[]) {
  return run("router", "join-key", "create", "--state", state, "--url", "https://router.test:8443", ...extra);
}

async function storedKeys(): Promise<number> {
  const store = await RouterStore.open(state);
  try {
    return store.listJoinKeys().length;
  } finally {
    store.close();
  }
}

describe("join-key numbers are bounded", () => {
  before(async () => {
    const init = await run("router", "init", "--state", state);
    assert.equal(init.code, 0, init.stderr);
  });
  after(() => rmSync(home, { recursive: true, force: true }));

  test("join-key create --ttl 99999999d is a usage error naming the accepted range, and stores nothing", async () => {
    for (const ttl of ["99999999d", "366d", "30s", `${"9".repeat(400)}d`]) {
      const r = await create("--ttl", ttl);
      assert.equal(r.code, 2, `--ttl ${ttl}: ${r.stderr}`);
      assert.match(r.stderr, /--ttl/);
      assert.match(r.stderr, /1 minute to 365 days/, r.stderr);
    }
    assert.equal(await storedKeys(), 0);
    const ok = await create("--ttl", "365d");
    assert.equal(ok.code, 0, ok.stderr);
    const never = await create("--ttl", "never");
    assert.equal(never.code, 0, never.stderr);
    assert.equal(await storedKeys(), 2);
  });

  test("join-key create --uses beyond the bound (or not a whole number) is a usage error naming the range", async () => {
    const before = await storedKeys();
    for (const uses of ["1e20", "10001", "99999999999999999999", "2.5", "-1"]) {
      const r = await create("--uses", uses);
      assert.equal(r.code, 2, `--uses ${uses}: ${r.stderr}`);
      assert.match(r.stderr, /--uses/);
    }
    assert.match((await create("--uses", "10001")).stderr, /1 to 10000/);
    assert.equal(await storedKeys(), before);
  });

  test("a stored expiry out of range (state written by an older xim) is listed as invalid, never crashes the list", async () => {
    const store = await RouterStore.open(state);
    try {
      for (const [i, expiresAt] of [8.64e15 + 1, 1e300, -1e300].entries())
        store.insertJoinKey({
          id: `jk_bad${i}`,
          hash: String(i).repeat(64),
          project: "default",
          usesAllowed: 1,
          uses: 0,
          expiresAt,
          labels: {},
          createdAt: Date.now(),
          revokedAt: null,
        });
    } finally {
      store.close();
    }
    const text = await run("router", "join-key", "list", "--state", state);
    assert.equal(text.code, 0, text.stderr);
    const bad = text.stdout.split("\n").filter((l) => l.startsWith("jk_bad"));
    assert.equal(bad.length, 3);
    for (const line of bad) assert.match(line, /invalid/);

    const json = await run("router", "join-key", "list", "--state", state, "--json");
    assert.equal(json.code, 0, json.stderr);
    const rows = (
      JSON.parse(json.stdout) as { joinKeys: { id: string; status: string; expiresAt: string }[] }
    ).joinKeys;
    for (const row of rows.filter((r) => r.id.startsWith("jk_bad"))) {
      assert.equal(row.status, "invalid", "a key whose expiry cannot be read is not active");
      assert.match(row.expiresAt, /^invalid/);
    }
  });

  test("a key whose stored expiry cannot be read enrolls no node (fails closed) and the refusal does not crash", async () => {
    const store = await RouterStore.open(state);
    try {
      for (const [i, expiresAt] of [1e300, -1e300, 8.64e15 + 1].entries()) {
        const hash = String(i + 5).repeat(64);
        store.insertJoinKey({
          id: `jk_unreadable${i}`,
          hash,
          project: "default",
          usesAllowed: 1,
          uses: 0,
          expiresAt,
          labels: {},
          createdAt: Date.now(),
          revokedAt: null,
        });
        const outcome = store.enrollNode({
          hash,
          project: "default",
          nodeId: `node_${String(i).repeat(24)}`,
          publicKey: `pk-${i}`,
          hostname: "h",
          agentVersion: "0",
          now: Date.now(),
        });
        assert.equal(outcome.ok, false, `expiry ${expiresAt}`);
        assert.equal(outcome.ok === false && outcome.code, "expired_key");
      }
      assert.equal(store.listNodes().length, 0);
    } finally {
      store.close();
    }
  });
});
