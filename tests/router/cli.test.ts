/**
 * `xim router init | join-key create | list | revoke | nodes` run
 * in-process through the real CLI parser with a recording Io.
 */
import assert from "node:assert/strict";
import { mkdtempSync, rmSync, statSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, describe, test } from "node:test";
import { commands } from "../../src/cli/commands.ts";
import { recordingIo } from "../../src/cli/io.ts";
import { runCli } from "../../src/cli/program.ts";
import { verboseVersion, versionLine } from "../../src/cli/version.ts";
import { parseJoinKey } from "../../src/protocol/join-key.ts";
import { parseDuration, parseLabels } from "../../src/router/join-keys.ts";
import { RouterStore } from "../../src/router/store.ts";

const home = mkdtempSync(join(tmpdir(), "xim-router-cli-"));
after(() => rmSync(home, { recursive: true, force: true }));
const state = join(home, "state");

async function run(...argv: string[]) {
  const rec = recordingIo(
    { HOME: home, XDG_STATE_HOME: join(home, "xdg-state"), XEROTIER_AGENT_LOG_LEVEL: "error" },
    home,
  );
  const code = await runCli(argv, rec.io, { version: versionLine, verboseVersion, commands });
  return { code, stdout: rec.stdout(), stderr: rec.stderr() };
}

describe("xim router CLI", () => {
  test("init creates a private state folder and is idempotent", async () => {
    const first = await run("router", "init", "--state", state, "--json");
    assert.equal(first.code, 0, first.stderr);
    assert.equal(JSON.parse(first.stdout).created, true);
    assert.equal(statSync(state).mode & 0o777, 0o700);
    assert.equal(statSync(join(state, "router.db")).mode & 0o777, 0o600);
    assert.equal(statSync(join(state, "tls.key")).mode & 0o777, 0o600);
    const again = await run("router", "init", "--state", state);
    assert.match(again.stdout, /already initialized; unchanged/);
  });

  test("--state defaults to $XDG_STATE_HOME/xim/router", async () => {
    const r = await run("router", "init", "--json");
    assert.equal(JSON.parse(r.stdout).stateDir, join(home, "xdg-state", "xim", "router"));
  });

  test("join-key create needs an address until serve has run, then prints the key once", async () => {
    const none = await run("router", "join-key", "create", "--state", state);
    assert.equal(none.code, 1);
    assert.match(none.stderr, /enrollment address is not known yet/);
    const r = await run(
      "router",
      "join-key",
      "create",
      "--state",
      state,
      "--project",
      "acme",
      "--uses",
      "3",
      "--ttl",
      "2h",
      "--labels",
      "gpu=h100",
      "--labels",
      "zone=b",
      "--url",
      "https://router.example:8443",
    );
    assert.equal(r.code, 0, r.stderr);
    const key = r.stdout.trim();
    const parsed = parseJoinKey(key);
    assert.ok(parsed.ok);
    assert.equal(parsed.key.url, "https://router.example:8443");
    assert.match(r.stderr, /3 use\(s\)/);

    const list = await run("router", "join-key", "list", "--state", state, "--json");
    const [row] = JSON.parse(list.stdout).joinKeys;
    assert.deepEqual(
      [row.project, row.status, row.usesAllowed, row.labels],
      ["acme", "active", 3, { gpu: "h100", zone: "b" }],
    );
    assert.ok(!list.stdout.includes(key.slice(12)), "the key itself is never listed");
    const store = await RouterStore.open(state);
    try {
      assert.ok(!JSON.stringify(store.listJoinKeys()).includes(key.slice(12)), "only the hash is stored");
    } finally {
      store.close();
    }

    const revoke = await run("router", "join-key", "revoke", row.id, "--state", state);
    assert.equal(revoke.code, 0, revoke.stderr);
    const after = await run("router", "join-key", "list", "--state", state);
    assert.match(after.stdout, /revoked/);
    const missing = await run("router", "join-key", "revoke", "jk_nope", "--state", state);
    assert.equal(missing.code, 2);
  });

  test("bad flags are usage errors that say what is accepted", async () => {
    const ttl = await run(
      "router",
      "join-key",
      "create",
      "--state",
      state,
      "--ttl",
      "soon",
      "--url",
      "https://x:1",
    );
    assert.equal(ttl.code, 2);
    assert.match(ttl.stderr, /not a duration/);
    const project = await run(
      "router",
      "join-key",
      "create",
      "--state",
      state,
      "--project",
      "Bad_Name",
      "--url",
      "https://x:1",
    );
    assert.equal(project.code, 2);
    assert.match(project.stderr, /not a project name/);
    const uses = await run("router", "join-key", "create", "--state", state, "--uses", "0");
    assert.equal(uses.code, 2);
  });

  test("nodes lists nothing on a fresh router", async () => {
    const r = await run("router", "nodes", "--state", state, "--json");
    assert.equal(r.code, 0, r.stderr);
    assert.deepEqual(JSON.parse(r.stdout).nodes, []);
  });

  test("durations and labels", () => {
    assert.equal(parseDuration("90s"), 90_000);
    assert.equal(parseDuration("1h30m"), 5_400_000);
    assert.equal(parseDuration("7d"), 604_800_000);
    assert.equal(parseDuration("never"), null);
    assert.throws(() => parseDuration("5 minutes"));
    assert.deepEqual(parseLabels("a=1, b=x=y"), { a: "1", b: "x=y" });
    assert.throws(() => parseLabels("novalue"), /KEY=VALUE/);
  });
});
