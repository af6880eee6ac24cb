/**
 * docs/architecture.md's import table is the rule: every import between
 * folders of src/ is on its folder's row, so the page cannot drift from the
 * code (and a folder that reaches up the layers fails here, naming the file).
 */
import assert from "node:assert/strict";
import { readdirSync, readFileSync, statSync } from "node:fs";
import { join, relative, resolve } from "node:path";
import { test } from "node:test";

const ROOT = resolve(import.meta.dirname, "../..");
const SRC = join(ROOT, "src");

function tsFiles(dir: string): string[] {
  return readdirSync(dir).flatMap((name) => {
    const path = join(dir, name);
    if (statSync(path).isDirectory()) return tsFiles(path);
    return name.endsWith(".ts") ? [path] : [];
  });
}

/** `| \`agent\` | core, engine |` rows of the "Who may import whom" table. */
function allowedImports(): Map<string, Set<string>> {
  const doc = readFileSync(join(ROOT, "docs/architecture.md"), "utf8");
  const section = doc.slice(doc.indexOf("## Who may import whom"), doc.indexOf("## The node's life"));
  const rows = [...section.matchAll(/^\| `([a-z-]+)` \| ([^|]+) \|$/gm)];
  return new Map(
    rows.map(([, folder, list]) => [
      folder,
      new Set(list.includes("(nothing)") ? [] : list.split(",").map((s) => s.trim())),
    ]),
  );
}

test("every import between src/ folders is allowed by docs/architecture.md", () => {
  const allowed = allowedImports();
  const folders = readdirSync(SRC).filter((f) => statSync(join(SRC, f)).isDirectory());
  assert.deepEqual([...allowed.keys()].sort(), folders.sort(), "the table has one row per folder of src/");
  const breaks: string[] = [];
  for (const folder of folders) {
    for (const file of tsFiles(join(SRC, folder))) {
      const text = readFileSync(file, "utf8");
      for (const [, spec] of text.matchAll(/from "(\.[^"]+)"/g)) {
        const target = relative(SRC, resolve(file, "..", spec)).split("/")[0];
        if (target === folder || !folders.includes(target)) continue;
        if (!allowed.get(folder)?.has(target)) breaks.push(`${relative(ROOT, file)} imports ${spec}`);
      }
    }
  }
  assert.deepEqual(breaks, []);
});
