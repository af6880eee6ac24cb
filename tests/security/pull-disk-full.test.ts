/**
 * A disk that fills up, a read-only cache filesystem: the operator's to fix,
 * so `xim pull` says which folder, how much is free and needed and what to
 * do, never "internal error (this is a bug)" with a stack. The end-to-end
 * cases mount a small tmpfs (root with CAP_SYS_ADMIN); where mounting is not
 * allowed they are skipped and tests/models/disk-errors.test.ts covers the
 * same errors injected into the pull's filesystem calls.
 */
import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { createServer, type Server } from "node:http";
import type { AddressInfo } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, test } from "node:test";
import { commands } from "../../src/cli/commands.ts";
import { recordingIo } from "../../src/cli/io.ts";
import { runCli } from "../../src/cli/program.ts";
import { type Lack, skipWithout } from "../helpers/prerequisite.ts";
import { bytesOf, sha256 } from "../models/helpers/file-server.ts";

const root = mkdtempSync(join(tmpdir(), "xim-pull-disk-"));
const cli = { version: () => "0.0.0", verboseVersion: async () => "", commands };

/** Mount a tmpfs of `size` at a new folder; undefined where this process may not mount. */
function mountTmpfs(name: string, options: string): string | undefined {
  const dir = join(root, name);
  mkdirSync(dir);
  try {
    execFileSync("mount", ["-t", "tmpfs", "-o", options, "tmpfs", dir], { stdio: "ignore" });
    return dir;
  } catch {
    return undefined;
  }
}

/** disk-errors.test.ts injects ENOSPC and EROFS without a mount; these tests see the kernel's own. */
const cannotMount: Lack = {
  what: "cannot mount a tmpfs here (needs root with CAP_SYS_ADMIN)",
  provide: ".ci/run runs as root in a container that may mount",
};

const mounted: string[] = [];
after(() => {
  for (const dir of mounted) {
    try {
      execFileSync("umount", ["-l", dir], { stdio: "ignore" });
    } catch {
      // already gone
    }
  }
  rmSync(root, { recursive: true, force: true });
});

async function xim(argv: string[], cacheDir: string) {
  const rec = recordingIo(
    {
      HOME: root,
      XEROTIER_AGENT_MODEL_CACHE_DIR: cacheDir,
      XEROTIER_AGENT_MODEL_PULL_MAX_ATTEMPTS: "1",
      XEROTIER_AGENT_MODEL_PULL_BASE_DELAY_MS: "1",
      XEROTIER_AGENT_MODEL_PULL_MAX_DELAY_MS: "1",
    },
    root,
  );
  const code = await runCli(argv, rec.io, cli);
  return { code, stderr: rec.stderr() };
}

const WEIGHTS = bytesOf(1024 * 1024, 5);
let server: Server;
let base = "";
/** Run just before the weights are sent: another process filling the disk meanwhile. */
let beforeWeights: () => void = () => {};

before(async () => {
  server = createServer((req, res) => {
    if (req.url === "/m/manifest.json") {
      res.writeHead(200, { "content-type": "application/json" });
      res.end(
        JSON.stringify({
          name: "disk-model",
          files: [{ path: "w.safetensors", size: WEIGHTS.byteLength, sha256: sha256(WEIGHTS) }],
        }),
      );
      return;
    }
    beforeWeights();
    res.writeHead(200, { "content-length": WEIGHTS.byteLength });
    res.end(WEIGHTS);
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
});
after(async () => {
  server.closeAllConnections();
  await new Promise<void>((resolve) => server.close(() => resolve()));
});

/** Write until the filesystem is full. */
function fill(dir: string) {
  const chunk = Buffer.alloc(64 * 1024, 1);
  for (let i = 0; ; i++) {
    try {
      writeFileSync(join(dir, `filler-${i}`), chunk);
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === "ENOSPC") return;
      throw err;
    }
  }
}

test("a disk that fills up during a pull names the folder, free and needed space, and the fix", {
  timeout: 60_000,
}, async (t) => {
  const disk = mountTmpfs("small", "size=3m");
  if (!disk) {
    skipWithout(t, cannotMount);
    return;
  }
  mounted.push(disk);
  const cacheDir = join(disk, "cache");
  beforeWeights = () => fill(disk);
  try {
    const r = await xim(["pull", `${base}/m/manifest.json`], cacheDir);
    assert.equal(r.code, 1, r.stderr);
    assert.doesNotMatch(r.stderr, /internal error|this is a bug|at .*\.ts:\d+/);
    assert.match(r.stderr, /disk is full \(ENOSPC/);
    assert.ok(r.stderr.includes(cacheDir), r.stderr);
    assert.match(r.stderr, /\d+(\.\d)? ?[KMG]?B free, 1\.0 MB still to download/);
    assert.match(r.stderr, /hint: free disk space, or point XEROTIER_AGENT_MODEL_CACHE_DIR at a larger disk/);
  } finally {
    beforeWeights = () => {};
  }
});

test("a read-only cache filesystem is named as such, not reported as a bug", {
  timeout: 60_000,
}, async (t) => {
  const disk = mountTmpfs("readonly", "size=1m,ro");
  if (!disk) {
    skipWithout(t, cannotMount);
    return;
  }
  mounted.push(disk);
  const r = await xim(["pull", `${base}/m/manifest.json`], join(disk, "cache"));
  assert.equal(r.code, 1, r.stderr);
  assert.doesNotMatch(r.stderr, /internal error|this is a bug/);
  assert.match(r.stderr, /read-only \(EROFS/);
  assert.match(r.stderr, /hint: point XEROTIER_AGENT_MODEL_CACHE_DIR at a folder on a writable filesystem/);
});
