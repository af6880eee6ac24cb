/**
 * Attack: a model folder whose config.json (or another file xim reads from
 * it) is a symlink to /dev/zero, a FIFO, or simply huge. Before the fix
 * `xim plan` read /dev/zero until the kernel's OOM killer stopped it, and
 * hung forever on a FIFO. Each case runs `xim plan` as a real child under a
 * 2 GiB address-space cap: it must refuse with a message naming the file,
 * exit 1, and finish well inside the time limit.
 */
import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import { cpSync, mkdirSync, rmSync, symlinkSync, truncateSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { after, describe, test } from "node:test";
import { MODELS, sandbox } from "../planner/fixtures.ts";
import { runXim } from "./xim-child.ts";

const box = sandbox();
after(() => box.cleanup());
const env = {
  HOME: box.root,
  PATH: box.binWith(["nvidia-smi", "lscpu"]),
  XIM_FIXTURE_GPU: "a40x2-pcie",
};

let n = 0;
/** A copy of a real model folder with `name` replaced by what `make` puts there. */
function modelWith(name: string, make: (path: string) => void): string {
  const dir = join(box.root, `model-${n++}`);
  cpSync(join(MODELS, "llama-3-8b-instruct"), dir, { recursive: true });
  rmSync(join(dir, name), { force: true });
  make(join(dir, name));
  return dir;
}

async function planRefuses(dir: string, what: RegExp): Promise<void> {
  // 60 s: the refusal takes well under a second; the bound only stops a hang.
  const r = await runXim(["plan", "--model", dir], { env, timeoutMs: 60_000 });
  assert.equal(r.timedOut, false, "xim plan hung");
  assert.equal(r.code, 1, `exit code ${r.code} (signal ${r.signal}); stderr: ${r.stderr.slice(0, 500)}`);
  assert.match(r.stderr, what);
  assert.doesNotMatch(r.stderr, /\n\s+at /, "a stack trace: an uncoded error");
}

describe("a model folder's files are read with a size limit", { timeout: 300_000 }, () => {
  test("config.json as a symlink to /dev/zero is refused, not read until memory runs out", async () => {
    const dir = modelWith("config.json", (p) => symlinkSync("/dev/zero", p));
    await planRefuses(dir, /config\.json.* is a character device; only a regular file is read/);
  });

  test("config.json as a FIFO is refused instead of blocking forever", async () => {
    const dir = modelWith("config.json", (p) => execFileSync("mkfifo", [p]));
    await planRefuses(dir, /config\.json.* is a FIFO/);
  });

  test("a 50 MB config.json is refused with the limit named", async () => {
    const dir = modelWith("config.json", (p) => {
      writeFileSync(p, "");
      truncateSync(p, 50 * 1024 * 1024);
    });
    await planRefuses(dir, /config\.json.* is 52428800 bytes; at most \d+ bytes are read/);
  });

  test("the safetensors index as a symlink to /dev/zero is refused", async () => {
    const dir = modelWith("model.safetensors.index.json", (p) => symlinkSync("/dev/zero", p));
    await planRefuses(dir, /model\.safetensors\.index\.json.* is a character device/);
  });

  test("hf_quant_config.json as a FIFO is refused instead of blocking forever", async () => {
    const dir = modelWith("hf_quant_config.json", (p) => execFileSync("mkfifo", [p]));
    await planRefuses(dir, /hf_quant_config\.json.* is a FIFO/);
  });

  test("a .env file that is a symlink to /dev/zero is refused", async () => {
    const dir = join(box.root, "cwd-env");
    mkdirSync(dir);
    symlinkSync("/dev/zero", join(dir, "zero.env"));
    const r = await runXim(["plan", "--model", join(MODELS, "llama-3-8b-instruct")], {
      env: { ...env, XEROTIER_AGENT_ENV_FILE: join(dir, "zero.env") },
      cwd: dir,
      timeoutMs: 60_000,
    });
    assert.equal(r.timedOut, false, "xim plan hung");
    assert.ok(
      r.code === 1 || r.code === 78,
      `exit code ${r.code} (signal ${r.signal}): ${r.stderr.slice(0, 500)}`,
    );
    assert.match(r.stderr, /zero\.env.* is a character device/);
  });
});
