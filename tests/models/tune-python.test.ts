/**
 * Which Python runs vLLM's MoE tuner: the same lookup the planner's probes
 * use (the vLLM launcher's #! line, else python3 on PATH), with XIM_PYTHON
 * first. Launchers and interpreters are small files in a temporary folder.
 */
import assert from "node:assert/strict";
import { chmodSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, test } from "node:test";
import { resolvePython } from "../../src/models/tune.ts";

const dir = mkdtempSync(join(tmpdir(), "xim-tune-python-"));
after(() => rmSync(dir, { recursive: true, force: true }));

function executable(path: string, text: string): string {
  mkdirSync(join(path, ".."), { recursive: true });
  writeFileSync(path, text);
  chmodSync(path, 0o755);
  return path;
}

test("XIM_PYTHON is taken as given", async () => {
  assert.equal(
    await resolvePython("vllm", { PATH: "", XIM_PYTHON: "/opt/py/bin/python" }),
    "/opt/py/bin/python",
  );
});

test("the interpreter a pip launcher names on its #! line runs the tuner", async () => {
  const venv = join(dir, "venv", "bin");
  const python = executable(join(venv, "python3.12"), "#!/bin/sh\n");
  executable(join(venv, "vllm"), `#!${python}\nfrom vllm.entrypoints.cli.main import main\n`);
  assert.equal(await resolvePython("vllm", { PATH: venv }), python);
});

test("a launcher run through `#!/usr/bin/env python3` means python3 on PATH", async () => {
  const bin = join(dir, "env-launcher", "bin");
  const python = executable(join(bin, "python3"), "#!/bin/sh\n");
  executable(join(bin, "vllm"), "#!/usr/bin/env python3\nimport vllm\n");
  assert.equal(await resolvePython("vllm", { PATH: bin }), python);
});

test("no launcher and no python3 on PATH: no Python (the tuner then fails with XIM_MOE_NO_PYTHON)", async () => {
  const empty = join(dir, "empty");
  mkdirSync(empty, { recursive: true });
  assert.equal(await resolvePython("vllm", { PATH: empty }), undefined);
});
