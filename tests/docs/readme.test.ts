import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { test } from "node:test";
import {
  README,
  ROUTER_END,
  ROUTER_START,
  renderConfigTable,
  renderRouterConfigTable,
  replaceTable,
} from "../../scripts/config-table.ts";
import { settingInfos } from "../../src/core/config/load.ts";
import { ExitCode } from "../../src/core/errors.ts";
import { routerSettingInfos } from "../../src/router/settings.ts";

test("the README's configuration table matches the schema (run `npm run docs:config` after changing a setting)", () => {
  const readme = readFileSync(README, "utf8");
  assert.equal(replaceTable(readme, renderConfigTable()), readme);
});

test("the README's router settings table matches `xim router serve`'s schema, a row for each", () => {
  const readme = readFileSync(README, "utf8");
  const table = renderRouterConfigTable();
  assert.equal(replaceTable(readme, table, ROUTER_START, ROUTER_END), readme);
  for (const s of routerSettingInfos) assert.ok(table.includes(`| \`${s.env}\` | \`--${s.flag}\` |`), s.env);
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
