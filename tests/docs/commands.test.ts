/**
 * Every shell block in the README and docs/ either runs here, as written, or
 * is listed below with the reason it cannot (a GPU, Docker, systemd, a real
 * host). A new block fails this test until it is one or the other, so no
 * documented command goes untested by accident.
 */
import assert from "node:assert/strict";
import { execFileSync, spawnSync } from "node:child_process";
import { copyFileSync, existsSync, mkdtempSync, readdirSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { describe, test } from "node:test";
import { lackingFile, lackingRoot, skipOption } from "../helpers/prerequisite.ts";

const ROOT = resolve(import.meta.dirname, "../..");

interface Block {
  file: string;
  line: number;
  text: string;
}

function shellBlocks(file: string): Block[] {
  const lines = readFileSync(join(ROOT, file), "utf8").split("\n");
  const blocks: Block[] = [];
  for (let i = 0; i < lines.length; i++) {
    if (lines[i] !== "```sh") continue;
    const start = i + 1;
    let end = start;
    while (end < lines.length && lines[end] !== "```") end++;
    blocks.push({ file, line: start, text: lines.slice(start, end).join("\n") });
    i = end;
  }
  return blocks;
}

const DOCS = [
  "README.md",
  ...readdirSync(join(ROOT, "docs"))
    .filter((f) => f.endsWith(".md"))
    .map((f) => `docs/${f}`),
];
const blocks = DOCS.flatMap(shellBlocks);

/** Blocks that cannot run in a test here, by their first command, with the reason. */
const NOT_HERE: Record<string, string> = {
  "npm ci && npm run demo":
    "the two set-up commands themselves: CI runs `npm ci` and `npm test`, and tests/e2e/demo.test.ts runs the demo",
  "xim enroll --join-key xjk_...":
    "needs a join key from a real router and vLLM; the journey runs in tests/e2e/control-plane.test.ts",
  "export XIM_ROUTER_STATE_DIR=/var/lib/xim-router":
    "a long-running router with placeholders (xak_..., node_...); the same journey runs in tests/agent/model-assign-processes.test.ts",
  "npm ci && npm run build && docker compose -f deploy/compose/compose.gpu.yaml build":
    "needs a Docker engine and a GPU",
  "npm ci": "the release build: CI runs `npm run release` and tests/build/release.test.ts",
  "sudo install -m 0755 dist/xim-linux-x64 /usr/local/bin/xim      # or xim-linux-arm64":
    "installs a systemd service on the host; tests/deploy checks the unit",
  "xim router models add llama-8b /data/models/Meta-Llama-3.1-8B-Instruct   # publish (hashes every file once)":
    "needs a real model and an enrolled node id; tests/agent/model-assign-processes.test.ts runs it",
};

function firstCommand(b: Block): string {
  return b.text
    .split("\n")[0]
    .replace(/\s+#.*$/, "")
    .trim();
}

function key(b: Block): string {
  const first = b.text.split("\n")[0];
  return NOT_HERE[first] !== undefined ? first : firstCommand(b);
}

const BINARY_BLOCK = "npm run build";

describe("documented shell commands", () => {
  test("every block is run here or says why it cannot be", () => {
    const unclassified = blocks.filter((b) => key(b) !== BINARY_BLOCK && NOT_HERE[key(b)] === undefined);
    assert.deepEqual(
      unclassified.map((b) => `${b.file}:${b.line}: ${firstCommand(b)}`),
      [],
      "add the block to a test, or to NOT_HERE with the reason",
    );
  });

  // The README's binary check, as written. It needs dist/xim (CI builds it
  // before `npm test`); the `npm run build` line is skipped when the binary
  // exists, so the test does not rebuild it. As root it really installs
  // /usr/local/bin/xim, and puts back whatever was there.
  const lack =
    lackingFile(
      join(ROOT, "dist/xim"),
      "dist/xim is not built",
      ".ci/run runs `npm run build` before `npm test`",
    ) ?? lackingRoot("installing into /usr/local/bin");
  test("the README's binary block runs as written", { skip: skipOption(lack), timeout: 60_000 }, () => {
    const block = blocks.find((b) => b.file === "README.md" && key(b) === BINARY_BLOCK);
    assert.ok(block, "the README has a block starting with `npm run build`");
    const script = block.text
      .split("\n")
      .filter((l) => !l.startsWith("npm run build") && !/^\s*#/.test(l))
      .join("\n");
    const target = "/usr/local/bin/xim";
    const saved = existsSync(target) ? join(mkdtempSync(join(tmpdir(), "xim-saved-")), "xim") : undefined;
    if (saved) copyFileSync(target, saved);
    try {
      const r = spawnSync("bash", ["-euo", "pipefail", "-c", script], {
        cwd: ROOT,
        encoding: "utf8",
        timeout: 50_000,
      });
      assert.equal(r.status, 0, `${r.stdout}\n${r.stderr}`);
      assert.match(r.stdout, /^xim \d+\.\d+\.\d+/m);
      assert.match(r.stdout, /curve: available/);
    } finally {
      if (saved) {
        copyFileSync(saved, target);
        rmSync(join(saved, ".."), { recursive: true, force: true });
      } else rmSync(target, { force: true });
    }
  });

  test("`npm run build` is the README's way to make dist/xim", () => {
    const pkg = JSON.parse(readFileSync(join(ROOT, "package.json"), "utf8"));
    assert.equal(pkg.scripts.build, "node scripts/build.ts");
    assert.ok(
      execFileSync("git", ["check-ignore", "dist/xim"], { cwd: ROOT, encoding: "utf8" }).includes("dist"),
    );
  });
});
