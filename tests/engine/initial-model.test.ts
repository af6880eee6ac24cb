import assert from "node:assert/strict";
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, describe, test } from "node:test";
import { isXimError } from "../../src/core/errors.ts";
import { validateInitialModelPath } from "../../src/engine/initial-model.ts";

const dir = mkdtempSync(join(tmpdir(), "xim-initial-model-"));
after(() => rmSync(dir, { recursive: true, force: true }));

function folder(name: string, files: string[]): string {
  const path = join(dir, name);
  mkdirSync(path);
  for (const f of files) writeFileSync(join(path, f), "x");
  return path;
}

async function refusal(path: string): Promise<string> {
  try {
    await validateInitialModelPath(path);
  } catch (err) {
    assert.ok(isXimError(err));
    assert.equal(err.code, "XIM_INITIAL_MODEL_INVALID");
    assert.equal(err.exitCode, 78);
    assert.ok(err.hint);
    return err.message;
  }
  assert.fail("expected a refusal");
}

describe("XEROTIER_AGENT_INITIAL_MODEL_PATH", () => {
  test("a folder with config.json and safetensors shards is accepted", async () => {
    const path = folder("ok", [
      "config.json",
      "model-00002-of-00002.safetensors",
      "model-00001-of-00002.safetensors",
      "tokenizer.json",
    ]);
    const model = await validateInitialModelPath(path);
    assert.equal(model.format, "safetensors");
    assert.deepEqual(model.weights, ["model-00001-of-00002.safetensors", "model-00002-of-00002.safetensors"]);
    assert.equal(model.configPath, join(path, "config.json"));
  });

  test("PyTorch .bin weights count as weights", async () => {
    assert.equal(
      (await validateInitialModelPath(folder("bin", ["config.json", "pytorch_model.bin"]))).format,
      "pytorch",
    );
  });

  test("a folder holding one .gguf file, or the .gguf file itself, is accepted", async () => {
    const path = folder("gguf", ["model-q4_k_m.gguf"]);
    assert.equal((await validateInitialModelPath(path)).format, "gguf");
    assert.equal((await validateInitialModelPath(join(path, "model-q4_k_m.gguf"))).format, "gguf");
  });

  test("a missing folder is refused, naming the path", async () => {
    const path = join(dir, "absent");
    assert.equal(await refusal(path), `XEROTIER_AGENT_INITIAL_MODEL_PATH=${path}: the path does not exist`);
  });

  test("a folder without config.json is refused, saying so", async () => {
    assert.match(await refusal(folder("noconfig", ["model.safetensors"])), /has no config\.json$/);
  });

  test("a folder without weights is refused, saying which files were expected", async () => {
    assert.match(
      await refusal(folder("noweights", ["config.json", "tokenizer.json"])),
      /has no weights \(\*\.safetensors, \*\.bin, \*\.pt or a \.gguf file\)/,
    );
  });

  test("an empty folder is refused naming both", async () => {
    assert.match(await refusal(folder("empty", [])), /has no config\.json and no weights/);
  });
});
