/**
 * Attack: a refused enrollment must change nothing at the router. A join
 * key's project part is outside its checksum, and its pins can be edited
 * with the checksum recomputed; before the fix the router spent a use and
 * recorded a node for such a key and only then refused it (or the node
 * refused the router), so a leaked key could be burnt and `xim router
 * nodes` filled with rows that never enrolled. Real processes: `xim router
 * serve`, `xim enroll` and the router's own CLI reading its state. Waits
 * are generous bounds (two shared cores), never timing assertions.
 */
import assert from "node:assert/strict";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, test } from "node:test";
import { loopbackServeArgs } from "../../scripts/lib/loopback-router.ts";
import { encodeJoinKey, parseJoinKey } from "../../src/protocol/join-key.ts";
import { baseEnv, XimProcess, xim } from "../router/harness.ts";

const home = mkdtempSync(join(tmpdir(), "xim-jk-spend-"));
const stateDir = join(home, "router");
const env = baseEnv(home);
let router: XimProcess | undefined;
let configDirs = 0;

async function createKey(uses: number): Promise<{ key: string; id: string }> {
  const r = await xim(
    ["router", "join-key", "create", "--state", stateDir, "--uses", String(uses), "--json"],
    env,
  );
  assert.equal(r.code, 0, r.stderr);
  return JSON.parse(r.stdout) as { key: string; id: string };
}

async function usesOf(id: string): Promise<number> {
  const r = await xim(["router", "join-key", "list", "--state", stateDir, "--json"], env);
  assert.equal(r.code, 0, r.stderr);
  const row = (JSON.parse(r.stdout) as { joinKeys: { id: string; uses: number }[] }).joinKeys.find(
    (k) => k.id === id,
  );
  assert.ok(row, `join key ${id} is listed`);
  return row.uses;
}

async function nodeCount(): Promise<number> {
  const r = await xim(["router", "nodes", "--state", stateDir, "--json"], env);
  assert.equal(r.code, 0, r.stderr);
  return (JSON.parse(r.stdout) as { nodes: unknown[] }).nodes.length;
}

/** `xim enroll` as a fresh node (its own config folder). */
function enrollWith(key: string) {
  return xim(["enroll", "--json"], {
    ...env,
    XEROTIER_AGENT_JOIN_KEY: key,
    XEROTIER_AGENT_CONFIG_DIR: join(home, `node-${configDirs++}`),
  });
}

/** The key re-encoded with some parts changed, checksum recomputed, as an attacker would. */
function edited(key: string, change: { project?: string; curvePin?: string }): string {
  const parsed = parseJoinKey(key);
  assert.ok(parsed.ok);
  return encodeJoinKey({ ...parsed.key, ...change });
}

// About twenty `xim` processes, each a few seconds to start on two shared cores: a generous bound.
describe("join-key spend order: a refused enrollment changes nothing", { timeout: 300_000 }, () => {
  before(async () => {
    const init = await xim(["router", "init", "--state", stateDir, "--json"], env);
    assert.equal(init.code, 0, init.stderr);
    router = new XimProcess(loopbackServeArgs(stateDir), env);
    await router.line((l) => l.startsWith("{"), 30_000);
  });

  after(async () => {
    await router?.stop();
    rmSync(home, { recursive: true, force: true });
  });

  test("a key with its project part edited is refused, spends no use, records no node; the genuine key still enrolls", async () => {
    const { key, id } = await createKey(1);
    const tampered = key.replace(/^xjk_default_/, "xjk_other_");
    assert.notEqual(tampered, key);
    assert.ok(parseJoinKey(tampered).ok, "the edit passes the key's own checksum");

    const refused = await enrollWith(tampered);
    assert.equal(refused.code, 4, `malformed key exit code; stderr: ${refused.stderr}`);
    assert.match(refused.stderr, /project/);
    assert.equal(await usesOf(id), 0, "the refused enrollment spent no use");
    assert.equal(await nodeCount(), 0, "the refused enrollment recorded no node");

    const genuine = await enrollWith(key);
    assert.equal(genuine.code, 0, genuine.stderr);
    assert.equal(await usesOf(id), 1);
    assert.equal(await nodeCount(), 1);
  });

  test("a key with its router CURVE pin edited (checksum recomputed) spends no use and records no node", async () => {
    const before = await nodeCount();
    const { key, id } = await createKey(1);
    const refused = await enrollWith(edited(key, { curvePin: "ab".repeat(32) }));
    assert.equal(refused.code, 4, `malformed key exit code; stderr: ${refused.stderr}`);
    assert.match(refused.stderr, /CURVE pin/);
    assert.equal(await usesOf(id), 0, "no use spent");
    assert.equal(await nodeCount(), before, "no node recorded");
    const genuine = await enrollWith(key);
    assert.equal(genuine.code, 0, genuine.stderr);
    assert.equal(await usesOf(id), 1);
  });
});
