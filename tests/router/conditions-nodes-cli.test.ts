/**
 * `xim router nodes` (a separate process reading the running router's
 * state) shows each node's own state and its conditions: severity, name
 * and age in the table, message and fix under it and in --json; a node
 * whose lease expired shows `offline` and none of its old conditions. Real
 * router, a node the test drives over CURVE ZeroMQ, the CLI as a child.
 */
import assert from "node:assert/strict";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, test } from "node:test";
import type { NodeCondition } from "../../src/protocol/conditions.ts";
import type { NodeListing } from "../../src/router/nodes.ts";
import { Stack } from "../helpers/stack.ts";
import { RogueNode } from "../security/rogue-node.ts";
import { baseEnv, waitFor, xim } from "./harness.ts";

const CONDITIONS: NodeCondition[] = [
  {
    condition: "gpu_lost",
    severity: "blocking",
    since: Date.now() - 5000,
    message: "GPU 0 stopped answering nvidia-smi",
    fix: "check the GPU with nvidia-smi -q; reset it or restart the machine",
  },
  {
    condition: "gpu_throttled",
    severity: "degraded",
    since: Date.now() - 60_000,
    message: "GPU 1 is throttled for heat",
    fix: "check the machine's cooling",
  },
];

describe("xim router nodes shows node states and conditions", { timeout: 60_000 }, () => {
  let stack: Stack;
  let node: RogueNode;
  const home = mkdtempSync(join(tmpdir(), "xim-nodes-cli-"));
  const nodes = async (...extra: string[]) => {
    const r = await xim(["router", "nodes", "--state", join(stack.dir, "router"), ...extra], baseEnv(home));
    assert.equal(r.code, 0, r.stderr);
    return r.stdout;
  };
  const listed = async () =>
    (JSON.parse(await nodes("--json")) as { nodes: NodeListing[] }).nodes.find(
      (n) => n.nodeId === node.nodeId,
    );

  before(async () => {
    stack = await Stack.start();
    node = RogueNode.enroll(stack.service);
    node.state = "loading";
    node.conditions = CONDITIONS;
    // A 1 s lease, renewed every 200 ms until the last test stops it.
    assert.equal((await node.register({ leaseMs: 1000 })).type, "register_ack");
  });
  after(async () => {
    node?.close();
    await stack?.close();
    rmSync(home, { recursive: true, force: true });
  });

  test("--json: the state the node reports and each condition with severity, since, message and fix", async () => {
    const shown = await listed();
    assert.equal(shown?.state, "loading");
    assert.equal(shown?.leaseState, "ready");
    assert.deepEqual(shown?.conditions, CONDITIONS);
  });

  test("the table: severity, name and age of each condition, their message and fix under it", async () => {
    const text = await nodes();
    const row = text.split("\n").find((l) => l.startsWith(node.nodeId));
    assert.match(row ?? "", /loading/);
    assert.match(row ?? "", /blocking gpu_lost \d+s, degraded gpu_throttled \d+[sm]/);
    assert.match(text, new RegExp(`${node.nodeId} gpu_lost \\(blocking, since \\d{4}-`));
    assert.match(text, /\n {2}GPU 0 stopped answering nvidia-smi\n {2}fix: check the GPU with nvidia-smi -q/);
  });

  test("a node whose lease expired is offline, without the conditions it reported while live", async () => {
    node.stopRenewing();
    await waitFor(() => stack.service.controlPlane.lease(node.nodeId)?.state === "expired", {
      timeoutMs: 15_000,
      what: "the lease to expire",
    });
    const shown = await listed();
    assert.equal(shown?.state, "offline");
    assert.deepEqual(shown?.conditions, []);
  });
});
