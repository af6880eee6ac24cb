import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { test } from "node:test";
import { README, renderConfigTable, replaceTable } from "../../scripts/config-table.ts";
import { settingInfos } from "../../src/core/config/load.ts";
import { ExitCode } from "../../src/core/errors.ts";

test("the README's configuration table matches the schema (run `npm run docs:config` after changing a setting)", () => {
  const readme = readFileSync(README, "utf8");
  assert.equal(replaceTable(readme, renderConfigTable()), readme);
});

test("the table has a row for every setting", () => {
  const table = renderConfigTable();
  for (const s of settingInfos) assert.ok(table.includes(`| \`${s.env}\` |`), s.env);
});

test("the README's exit-code table lists every code of the ExitCode registry, and no other", () => {
  const readme = readFileSync(README, "utf8");
  const section = readme.slice(readme.indexOf("### Exit codes"));
  const table = section.slice(0, section.indexOf("\n\n", section.indexOf("| code |")));
  const documented = [...table.matchAll(/^\| (\d+) +\|/gm)].map((m) => Number(m[1]));
  assert.deepEqual(
    documented,
    [...new Set(Object.values(ExitCode))].sort((a, b) => a - b),
  );
});
