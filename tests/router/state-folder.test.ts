import assert from "node:assert/strict";
import { existsSync, mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, describe, test } from "node:test";
import { commands } from "../../src/cli/commands.ts";
import { recordingIo } from "../../src/cli/io.ts";
import { runCli } from "../../src/cli/program.ts";

const home = mkdtempSync(join(tmpdir(), "xim-router-state-"));
after(() => rmSync(home, { recursive: true, force: true }));
const root = { version: () => "0", verboseVersion: async () => "", commands };

async function xim(argv: string[], env: Record<string, string> = {}) {
  const rec = recordingIo({ HOME: home, XDG_STATE_HOME: join(home, "state"), ...env }, home);
  const code = await runCli(argv, rec.io, root);
  return { code, stdout: rec.stdout(), stderr: rec.stderr() };
}

describe("one rule for the router's state folder", { timeout: 60_000 }, () => {
  const readers = [
    ["router", "nodes"],
    ["router", "join-key", "list"],
    ["router", "api-key", "list"],
    ["router", "models", "list"],
  ];

  for (const argv of readers) {
    test(`xim ${argv.join(" ")} --state on a folder that holds no router fails and creates nothing`, async () => {
      const typo = join(home, "typo");
      const r = await xim([...argv, "--state", typo]);
      assert.equal(r.code, 1, r.stderr);
      assert.match(r.stderr, /typo \(--state\) holds no router/);
      assert.match(r.stderr, /xim router init --state .*typo/);
      assert.ok(!existsSync(typo), "no folder was created");
    });
  }

  test("XIM_ROUTER_STATE_DIR is used by every subcommand, and --state wins over it", async () => {
    const a = join(home, "a");
    const b = join(home, "b");
    assert.equal((await xim(["router", "init", "--state", a, "--json"])).code, 0);
    assert.equal((await xim(["router", "init", "--state", b, "--json"])).code, 0);
    const env = { XIM_ROUTER_STATE_DIR: a };
    const created = await xim(
      ["router", "join-key", "create", "--project", "p", "--url", "https://r.example:8443", "--json"],
      env,
    );
    assert.equal(created.code, 0, created.stderr);
    const inA = JSON.parse((await xim(["router", "join-key", "list", "--json"], env)).stdout);
    const inB = JSON.parse((await xim(["router", "join-key", "list", "--json", "--state", b], env)).stdout);
    assert.equal(inA.joinKeys.length, 1);
    assert.equal(inB.joinKeys.length, 0);
  });

  test("without --state or the variable, the default folder is named in the refusal", async () => {
    const r = await xim(["router", "nodes"]);
    assert.equal(r.code, 1);
    assert.match(r.stderr, /state\/xim\/router \(the default\) holds no router/);
  });
});
