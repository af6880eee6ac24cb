import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, describe, test } from "node:test";
import { commands } from "../../src/cli/commands.ts";
import { recordingIo } from "../../src/cli/io.ts";
import { runCli } from "../../src/cli/program.ts";
import { settingInfos } from "../../src/core/config/load.ts";

const home = mkdtempSync(join(tmpdir(), "xim-cli-"));
after(() => rmSync(home, { recursive: true, force: true }));
const root = { version: () => "9.9.9", verboseVersion: async () => "verbose\n", commands };

async function xim(argv: string[], env: Record<string, string> = {}) {
  const rec = recordingIo({ HOME: home, ...env }, home);
  const code = await runCli(argv, rec.io, root);
  return { code, stdout: rec.stdout(), stderr: rec.stderr() };
}

describe("usage errors exit 2 and suggest", () => {
  test("an unknown subcommand suggests the nearest one", async () => {
    const r = await xim(["confg"]);
    assert.equal(r.code, 2);
    assert.match(r.stderr, /unknown command 'confg'\. Did you mean 'xim config'\?/);
  });

  test("a word far from every subcommand still gets a suggestion and the list", async () => {
    const r = await xim(["nope"]);
    assert.equal(r.code, 2);
    assert.match(r.stderr, /Did you mean 'xim \w[\w-]*'\?/);
    assert.match(r.stderr, /Commands: enroll, run, doctor/);
  });

  test("an unknown flag is a usage error naming the nearest flag", async () => {
    const r = await xim(["config", "--jsn"]);
    assert.equal(r.code, 2);
    assert.match(r.stderr, /unknown option '--jsn'/);
    assert.match(r.stderr, /--json/);
  });

  test("no subcommand prints help and exits 2", async () => {
    const r = await xim([]);
    assert.equal(r.code, 2);
    assert.match(r.stderr, /Usage: xim/);
  });
});

describe("help", () => {
  test("--help lists every subcommand and the exit codes", async () => {
    const r = await xim(["--help"]);
    assert.equal(r.code, 0);
    for (const name of ["enroll", "run", "doctor", "tune-moe", "pull", "router", "config"]) {
      assert.match(r.stdout, new RegExp(`\\n  ${name}\\b`));
    }
    assert.match(r.stdout, /78 {2}configuration error/);
  });

  test("each setting flag in a subcommand's --help-all names its variable", async () => {
    const r = await xim(["config", "--help-all"]);
    assert.equal(r.code, 0);
    // Descriptions wrap at 80 columns, so "env: NAME" may span a line break.
    const text = r.stdout.replace(/\s+/g, " ");
    for (const s of settingInfos) {
      assert.ok(text.includes(`--${s.flag}`), `--${s.flag} missing from help`);
      assert.ok(text.includes(`env: ${s.env}`), `${s.env} missing from help`);
    }
    assert.match(r.stdout, /Examples:\n {2}\$ xim config/);
  });

  test("--version prints the version", async () => {
    const r = await xim(["--version"]);
    assert.equal(r.stdout, "xim 9.9.9\n");
  });
});

describe("xim config", () => {
  test("--json lists every setting with its default and source", async () => {
    const r = await xim(["config", "--json"]);
    assert.equal(r.code, 0);
    const out = JSON.parse(r.stdout) as {
      settings: Array<{ env: string; default: unknown; source: string }>;
    };
    assert.deepEqual(
      out.settings.map((s) => s.env),
      settingInfos.map((s) => s.env),
    );
    const window = out.settings.find((s) => s.env === "XEROTIER_AGENT_FLOW_CONTROL_WINDOW_BYTES");
    assert.deepEqual(window, {
      key: "flowControlWindowBytes",
      env: "XEROTIER_AGENT_FLOW_CONTROL_WINDOW_BYTES",
      group: "Flow control",
      value: 65536,
      default: "65536",
      source: "default",
      secret: false,
    });
  });

  test("a secret set in the environment is shown as *** and never printed", async () => {
    const r = await xim(["config"], {
      XEROTIER_AGENT_VLLM_SALT_SECRET: "s3cret",
      XEROTIER_AGENT_JOIN_KEY: "xjk_p_tok3n",
    });
    assert.equal(r.code, 0);
    assert.doesNotMatch(r.stdout + r.stderr, /s3cret|tok3n/);
    assert.match(r.stdout, /XEROTIER_AGENT_VLLM_SALT_SECRET\s+\*\*\*\s+environment/);
    const json = await xim(["config", "--json"], { XEROTIER_AGENT_VLLM_SALT_SECRET: "s3cret" });
    assert.doesNotMatch(json.stdout, /s3cret/);
  });

  test("a flag value shows its flag as the source", async () => {
    const r = await xim(["config", "--json", "--lease-duration-ms", "60000"]);
    const out = JSON.parse(r.stdout) as { settings: Array<{ env: string; value: unknown; source: string }> };
    const lease = out.settings.find((s) => s.env === "XEROTIER_AGENT_LEASE_DURATION_MS");
    assert.equal(lease?.value, 60000);
    assert.equal(lease?.source, "flag --lease-duration-ms");
  });

  test("a bad value exits 78 naming the variable and the accepted range", async () => {
    const r = await xim(["config"], { XEROTIER_AGENT_FLOW_CONTROL_REPLENISH_THRESHOLD: "1.5" });
    assert.equal(r.code, 78);
    assert.match(
      r.stderr,
      /XEROTIER_AGENT_FLOW_CONTROL_REPLENISH_THRESHOLD=1\.5 \(from environment\): expected a fraction from 0\.0 to 1\.0/,
    );
    assert.equal(r.stdout, "");
  });

  test("the lease ratio rule explains itself", async () => {
    const r = await xim(["config"], { XEROTIER_AGENT_LEASE_DURATION_MS: "15000" });
    assert.equal(r.code, 78);
    assert.match(r.stderr, /LEASE_DURATION_MS=15000 .*at least 2x XEROTIER_AGENT_LEASE_RENEWAL_INTERVAL_MS/);
  });
});

test("the real executable from source: exit codes reach the shell", { timeout: 60_000 }, () => {
  const main = join(import.meta.dirname, "..", "..", "main.ts");
  const run = (args: string[], env: Record<string, string> = {}) =>
    spawnSync(process.execPath, [main, ...args], {
      env: { HOME: home, PATH: process.env.PATH ?? "", ...env },
      encoding: "utf8",
    });
  assert.equal(run(["nope"]).status, 2);
  assert.equal(run(["config"], { XEROTIER_AGENT_LEASE_DURATION_MS: "15000" }).status, 78);
  const ok = run(["config", "--json"]);
  assert.equal(ok.status, 0, ok.stderr);
  assert.ok(JSON.parse(ok.stdout).settings.length > 40);
});
