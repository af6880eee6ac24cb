/**
 * `xim router models assign | unassign` and the ASSIGNED column of
 * `xim router nodes`, through the real CLI parser with a recording Io,
 * against a router state folder with enrolled nodes.
 */
import assert from "node:assert/strict";
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, test } from "node:test";
import { commands } from "../../src/cli/commands.ts";
import { recordingIo } from "../../src/cli/io.ts";
import { runCli } from "../../src/cli/program.ts";
import { verboseVersion, versionLine } from "../../src/cli/version.ts";
import { describeAssignment } from "../../src/router/model-assignments.ts";
import { RouterStore } from "../../src/router/store.ts";

const home = mkdtempSync(join(tmpdir(), "xim-assign-cli-"));
after(() => rmSync(home, { recursive: true, force: true }));
const state = join(home, "state");
const NODE_A = `node_${"a1".repeat(12)}`;
const NODE_B = `node_${"a2".repeat(12)}`;
const NODE_C = `node_${"c3".repeat(12)}`;

async function run(...argv: string[]) {
  const rec = recordingIo(
    { HOME: home, XDG_STATE_HOME: join(home, "xdg-state"), XEROTIER_AGENT_LOG_LEVEL: "error" },
    home,
  );
  const code = await runCli(argv, rec.io, { version: versionLine, verboseVersion, commands });
  return { code, stdout: rec.stdout(), stderr: rec.stderr() };
}

before(async () => {
  const store = await RouterStore.open(state);
  try {
    store.insertJoinKey({
      id: "jk_test",
      hash: "h".repeat(64),
      project: "default",
      usesAllowed: 3,
      uses: 0,
      expiresAt: null,
      labels: {},
      createdAt: 0,
      revokedAt: null,
    });
    for (const [i, nodeId] of [NODE_A, NODE_B, NODE_C].entries()) {
      const r = store.enrollNode({
        hash: "h".repeat(64),
        project: "default",
        nodeId,
        publicKey: `key-${i}`,
        hostname: `host-${i}`,
        agentVersion: "0.0.0",
        now: i,
      });
      assert.ok(r.ok);
    }
  } finally {
    store.close();
  }
});

describe("xim router models assign", () => {
  test("an unknown node is a usage error that lists the enrolled nodes", async () => {
    const r = await run("router", "models", "assign", "node_nope", "tiny", "--state", state);
    assert.equal(r.code, 2);
    assert.match(r.stderr, /no enrolled node 'node_nope'/);
    assert.match(r.stderr, new RegExp(`enrolled nodes: ${NODE_A}, ${NODE_B}, ${NODE_C}`));
    assert.match(r.stderr, /xim router nodes/);
  });

  test("a prefix that matches several nodes is refused, naming them", async () => {
    const r = await run("router", "models", "assign", "node_a", "tiny", "--state", state);
    assert.equal(r.code, 2);
    assert.match(r.stderr, /'node_a' matches 2 nodes/);
    assert.ok(r.stderr.includes(NODE_A) && r.stderr.includes(NODE_B));
  });

  test("a model the router does not publish is a usage error that says what is published", async () => {
    const none = await run("router", "models", "assign", NODE_A, "tiny", "--state", state);
    assert.equal(none.code, 2);
    assert.match(none.stderr, /publishes no model named 'tiny'; it publishes none yet/);
    assert.match(none.stderr, /xim router models add/);

    const folder = join(home, "model");
    mkdirSync(folder, { recursive: true });
    writeFileSync(join(folder, "config.json"), "{}");
    const add = await run("router", "models", "add", "small", folder, "--state", state);
    assert.equal(add.code, 0, add.stderr);
    const other = await run("router", "models", "assign", NODE_A, "tiny", "--state", state);
    assert.equal(other.code, 2);
    assert.match(other.stderr, /publishes no model named 'tiny'; published: small/);
  });

  test("assign records the assignment; nodes shows it; unassign forgets it", async () => {
    const r = await run("router", "models", "assign", "node_c3", "small", "--state", state, "--json");
    assert.equal(r.code, 0, r.stderr);
    const out = JSON.parse(r.stdout);
    assert.equal(out.nodeId, NODE_C, "an unambiguous prefix names the node");
    assert.equal(out.name, "small");
    assert.match(out.assignmentId, /^as_[0-9a-f]{16}$/);

    const listed = await run("router", "nodes", "--state", state, "--json");
    const node = JSON.parse(listed.stdout).nodes.find((n: { nodeId: string }) => n.nodeId === NODE_C);
    assert.deepEqual([node.assignment.name, node.assignment.progress], ["small", null]);
    const text = await run("router", "nodes", "--state", state);
    assert.match(text.stdout, /ASSIGNED/);
    assert.match(text.stdout, /router:\/\/small assigned/);

    // A second assignment replaces the first, with a new id.
    const again = await run("router", "models", "assign", NODE_C, "small", "--state", state, "--json");
    assert.notEqual(JSON.parse(again.stdout).assignmentId, out.assignmentId);

    const un = await run("router", "models", "unassign", NODE_C, "--state", state);
    assert.equal(un.code, 0, un.stderr);
    assert.match(un.stdout, /has no assignment now/);
    const twice = await run("router", "models", "unassign", NODE_C, "--state", state);
    assert.match(twice.stdout, /had no assignment/);
    const missing = await run("router", "models", "unassign", "node_nope", "--state", state);
    assert.equal(missing.code, 2);
  });

  test("progress as `xim router nodes` shows it", () => {
    const base = { nodeId: NODE_A, name: "m", assignmentId: "as_1", assignedAt: 0 };
    const at = 0;
    assert.equal(describeAssignment(null), "-");
    assert.equal(
      describeAssignment({
        ...base,
        progress: { state: "pulling", bytesDone: 1_200_000_000, bytesTotal: 2_900_000_000, at },
      }),
      "router://m 41% (1.2 GB of 2.9 GB)",
    );
    assert.equal(
      describeAssignment({ ...base, progress: { state: "verifying", bytesDone: 5, bytesTotal: 5, at } }),
      "router://m verifying",
    );
    assert.equal(
      describeAssignment({ ...base, progress: { state: "ready", bytesDone: 5, bytesTotal: 5, at } }),
      "router://m ready",
    );
    assert.equal(
      describeAssignment({
        ...base,
        progress: { state: "failed", bytesDone: 0, bytesTotal: 5, message: "disk full", at },
      }),
      "router://m failed: disk full",
    );
  });
});
