import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { test } from "node:test";
import { README, renderConfigTable, replaceTable } from "../../scripts/config-table.ts";
import { settingInfos } from "../../src/core/config/load.ts";

test("the README's configuration table matches the schema (run `npm run docs:config` after changing a setting)", () => {
  const readme = readFileSync(README, "utf8");
  assert.equal(replaceTable(readme, renderConfigTable()), readme);
});

test("the table has a row for every setting", () => {
  const table = renderConfigTable();
  for (const s of settingInfos) assert.ok(table.includes(`| \`${s.env}\` |`), s.env);
});
