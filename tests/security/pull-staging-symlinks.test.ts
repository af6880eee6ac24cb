/**
 * Attack: the staging folder a pull resumes from holds something it did
 * not create: the folder itself is a symlink, a parent folder or a file
 * inside it is a symlink, or its bookkeeping file (.xim-pull.json) lists
 * paths outside it. The pull never writes through a symlink and never
 * removes anything outside the staging folder. Real loopback HTTP server.
 */
import assert from "node:assert/strict";
import {
  existsSync,
  mkdirSync,
  mkdtempSync,
  readFileSync,
  rmSync,
  statSync,
  symlinkSync,
  writeFileSync,
} from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, test } from "node:test";
import { type PullConfig, pullModel } from "../../src/models/pull.ts";
import { resolveSource } from "../../src/models/resolve-source.ts";
import type { PullError } from "../../src/models/source.ts";
import { bytesOf, FileServer, sha256 } from "../models/helpers/file-server.ts";

const root = mkdtempSync(join(tmpdir(), "xim-pull-symlinks-"));
after(() => rmSync(root, { recursive: true, force: true }));
const server = new FileServer();
before(() => server.start());
after(() => server.stop());

const CANARY = "the canary is untouched\n";
const WEIGHTS = bytesOf(4096, 7);

let n = 0;
function scene(file = "w.bin") {
  n += 1;
  const top = join(root, `s${n}`);
  const outside = join(top, "outside");
  mkdirSync(outside, { recursive: true });
  writeFileSync(join(outside, "canary.txt"), CANARY);
  const name = `victim${n}`;
  const config: PullConfig = {
    modelCacheDir: join(top, "cache"),
    modelCacheMaxSizeGb: 100,
    modelPullMaxAttempts: 1,
    modelPullBaseDelayMs: 1,
    modelPullMaxDelayMs: 1,
  };
  const manifest = { name, files: [{ path: file, size: WEIGHTS.byteLength, sha256: sha256(WEIGHTS) }] };
  server.json.set(`/${name}/manifest.json`, manifest);
  server.files.set(`/${name}/${file}`, WEIGHTS);
  const staging = join(config.modelCacheDir, ".xim", "staging", name);
  mkdirSync(join(config.modelCacheDir, ".xim", "staging"), { recursive: true });
  const source = resolveSource(`${server.base}/${name}/manifest.json`, { env: {} });
  return { top, outside, name, config, manifest, staging, source };
}

function assertCanary(outside: string) {
  assert.equal(readFileSync(join(outside, "canary.txt"), "utf8"), CANARY, "the canary is untouched");
}

test("a staging folder that is a symlink is refused, and nothing it points at is removed", async () => {
  const s = scene();
  // What the link points at looks like an interrupted pull that lists the canary.
  writeFileSync(
    join(s.outside, ".xim-pull.json"),
    JSON.stringify({ name: s.name, files: [{ path: "canary.txt", size: 1 }] }),
  );
  symlinkSync(s.outside, s.staging);
  await assert.rejects(pullModel({ source: s.source, config: s.config }), (err: PullError) => {
    assert.equal(err.code, "XIM_CACHE_UNSAFE", err.message);
    assert.ok(err.message.includes(s.staging), err.message);
    assert.match(err.message, /symlink/);
    return true;
  });
  assertCanary(s.outside);
  assert.ok(existsSync(join(s.outside, ".xim-pull.json")), "nothing was removed through the link");
});

test("a stale .xim-pull.json listing ../ paths cannot make the pull remove files outside staging", async () => {
  const s = scene();
  mkdirSync(s.staging);
  const outsidePath = "../../../../outside/canary.txt";
  writeFileSync(
    join(s.staging, ".xim-pull.json"),
    JSON.stringify({ name: s.name, files: [{ path: outsidePath, size: 1 }] }),
  );
  const result = await pullModel({ source: s.source, config: s.config });
  assertCanary(s.outside);
  assert.deepEqual(readFileSync(join(result.path, "w.bin")), Buffer.from(WEIGHTS));
});

test("a file in staging that is a symlink is replaced, never written through", async () => {
  const s = scene();
  mkdirSync(s.staging);
  // The bookkeeping matches the manifest, so the pull would resume w.bin.
  writeFileSync(join(s.staging, ".xim-pull.json"), JSON.stringify(s.manifest));
  symlinkSync(join(s.outside, "canary.txt"), join(s.staging, "w.bin"));
  const result = await pullModel({ source: s.source, config: s.config });
  assertCanary(s.outside);
  assert.deepEqual(readFileSync(join(result.path, "w.bin")), Buffer.from(WEIGHTS));
});

test("a folder in staging that is a symlink is never written through", async () => {
  const s = scene("sub/w.bin");
  mkdirSync(s.staging);
  writeFileSync(join(s.staging, ".xim-pull.json"), JSON.stringify(s.manifest));
  symlinkSync(s.outside, join(s.staging, "sub"));
  const result = await pullModel({ source: s.source, config: s.config });
  assertCanary(s.outside);
  assert.ok(!existsSync(join(s.outside, "w.bin")), "nothing was written into the linked folder");
  assert.deepEqual(readFileSync(join(result.path, "sub", "w.bin")), Buffer.from(WEIGHTS));
});

test("xim's staging area (.xim/staging) as a symlink is refused, and its target is left alone", async () => {
  const s = scene();
  rmSync(join(s.config.modelCacheDir, ".xim", "staging"), { recursive: true });
  symlinkSync(s.outside, join(s.config.modelCacheDir, ".xim", "staging"));
  const modeBefore = statSync(s.outside).mode;
  await assert.rejects(pullModel({ source: s.source, config: s.config }), (err: PullError) => {
    assert.equal(err.code, "XIM_CACHE_UNSAFE", err.message);
    assert.match(err.message, /\.xim\/staging is a symlink/);
    return true;
  });
  assertCanary(s.outside);
  assert.equal(statSync(s.outside).mode, modeBefore, "the link's target was not chmod-ed");
  assert.ok(!existsSync(join(s.outside, s.name)), "nothing was created in the link's target");
});
