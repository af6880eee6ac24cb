import assert from "node:assert/strict";
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, test } from "node:test";
import type { XimError } from "../../src/core/errors.ts";
import { checkLocalModel } from "../../src/models/local.ts";

const root = mkdtempSync(join(tmpdir(), "xim-local-"));
after(() => rmSync(root, { recursive: true, force: true }));

test("an initial model folder must hold config.json and non-empty weights", async () => {
  const dir = join(root, "m");
  await assert.rejects(checkLocalModel(dir), (e: XimError) => e.code === "XIM_MODEL_NOT_FOUND");
  mkdirSync(dir);
  await assert.rejects(checkLocalModel(dir), /has no config\.json/);
  writeFileSync(join(dir, "config.json"), "{}");
  await assert.rejects(checkLocalModel(dir), /no weights/);
  writeFileSync(join(dir, "model.safetensors"), "");
  await assert.rejects(checkLocalModel(dir), /is empty/);
  writeFileSync(join(dir, "model.safetensors"), "x");
  assert.deepEqual(await checkLocalModel(dir), { path: dir, weightFiles: 1 });
});
