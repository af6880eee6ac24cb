import assert from "node:assert/strict";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, describe, test } from "node:test";
import { commands } from "../../src/cli/commands.ts";
import { recordingIo } from "../../src/cli/io.ts";
import { runCli } from "../../src/cli/program.ts";
import { GROUPS } from "../../src/core/config/kit.ts";
import { settingInfos } from "../../src/core/config/load.ts";

const home = mkdtempSync(join(tmpdir(), "xim-help-"));
after(() => rmSync(home, { recursive: true, force: true }));
const root = { version: () => "9.9.9", verboseVersion: async () => "verbose\n", commands };

async function xim(argv: string[], columns?: number) {
  const rec = recordingIo({ HOME: home }, home);
  rec.io.columns = columns;
  const code = await runCli(argv, rec.io, root);
  return { code, stdout: rec.stdout(), stderr: rec.stderr() };
}

/** Lines of help outside the Examples section (example commands are not wrapped: they are meant to be copied). */
function proseLines(help: string): string[] {
  return help.split("\nExamples:\n")[0].split("\n");
}

describe("--help shows a command's own flags and the common settings, wrapped", () => {
  for (const name of ["run", "plan", "doctor"]) {
    test(`xim ${name} --help fits 80 columns and points to --help-all`, async () => {
      const r = await xim([name, "--help"]);
      assert.equal(r.code, 0);
      const wide = proseLines(r.stdout).filter((l) => l.length > 80);
      assert.deepEqual(wide, []);
      assert.match(r.stdout, new RegExp(`'xim ${name} --help-all' lists them all`));
      const flags = r.stdout.match(/^ {2}--[a-z-]+/gm) ?? [];
      assert.ok(flags.length <= 14, `${flags.length} flags shown: ${flags.join(" ")}`);
    });
  }

  test("a terminal's width is used when stdout is one", async () => {
    const r = await xim(["run", "--help"], 120);
    const longest = Math.max(...proseLines(r.stdout).map((l) => l.length));
    assert.ok(longest > 80 && longest <= 120, `longest line ${longest}`);
  });

  test("--help-all lists every setting, under the Xerotier documentation's groups in order", async () => {
    const r = await xim(["run", "--help-all"]);
    assert.equal(r.code, 0);
    for (const s of settingInfos) assert.match(r.stdout, new RegExp(`--${s.flag}\\b`), s.flag);
    const headings = [...r.stdout.matchAll(/^(.+) settings:$/gm)].map((m) => m[1]);
    assert.deepEqual(
      headings,
      GROUPS.filter((g) => settingInfos.some((s) => s.group === g)),
    );
    assert.deepEqual(
      proseLines(r.stdout).filter((l) => l.length > 80),
      [],
    );
  });

  test("a setting hidden from --help still works as a flag", async () => {
    const r = await xim(["config", "--json", "--lease-duration-ms", "40000"]);
    assert.equal(r.code, 0, r.stderr);
    const setting = JSON.parse(r.stdout).settings.find(
      (s: { env: string }) => s.env === "XEROTIER_AGENT_LEASE_DURATION_MS",
    );
    assert.equal(String(setting.value), "40000");
    assert.match(setting.source, /^flag/);
  });
});
