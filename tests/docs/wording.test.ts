/**
 * What users read (messages, hints, help, docs, comments) names the Xerotier
 * documentation or states the fact; internal words for it ("the seed") mean
 * nothing to them.
 */
import assert from "node:assert/strict";
import { readdirSync, readFileSync, statSync } from "node:fs";
import { join, relative, resolve } from "node:path";
import { test } from "node:test";

const ROOT = resolve(import.meta.dirname, "../..");

function files(dir: string, exts: readonly string[]): string[] {
  return readdirSync(dir).flatMap((name) => {
    const path = join(dir, name);
    if (statSync(path).isDirectory()) return files(path, exts);
    return exts.some((e) => name.endsWith(e)) ? [path] : [];
  });
}

test("no user-facing text calls the Xerotier documentation 'the seed'", () => {
  const scanned = [
    ...files(join(ROOT, "src"), [".ts"]),
    ...files(join(ROOT, "docs"), [".md"]),
    ...files(join(ROOT, "deploy"), [".md", ".yaml", ".env", ".service", "Dockerfile"]),
    join(ROOT, "README.md"),
  ];
  const hits: string[] = [];
  for (const f of scanned) {
    readFileSync(f, "utf8")
      .split("\n")
      .forEach((line, i) => {
        // "seed" as a word about the reference; not random seeds (fast-check, the simulator's output seed).
        if (
          /\b(the )?seed('s)?\b/i.test(line) &&
          !/\bseed\s*[:=(]|const seed|\bseed\.|random seed|--seed/i.test(line)
        ) {
          hits.push(`${relative(ROOT, f)}:${i + 1}: ${line.trim()}`);
        }
      });
  }
  assert.deepEqual(hits, []);
});
