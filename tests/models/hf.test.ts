import assert from "node:assert/strict";
import { existsSync, mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, test } from "node:test";
import { gitBlobSha1 } from "../../src/models/checksum.ts";
import { type PullConfig, pullModel } from "../../src/models/pull.ts";
import { resolveSource } from "../../src/models/resolve-source.ts";
import type { PullError } from "../../src/models/source.ts";
import { parseHfRef } from "../../src/models/sources/hf.ts";
import { bytesOf, FileServer, sha256 } from "./helpers/file-server.ts";

const root = mkdtempSync(join(tmpdir(), "xim-hf-"));
after(() => rmSync(root, { recursive: true, force: true }));
const hub = new FileServer();
before(() => hub.start());
after(() => hub.stop());

const COMMIT = "0123456789abcdef0123456789abcdef01234567";
const enc = new TextEncoder();

interface RepoFile {
  path: string;
  data: Uint8Array;
  lfs: boolean;
}

/** Publish a repository the way the Hub's API describes it. */
function publishRepo(repo: string, files: RepoFile[], options: { sizes?: boolean; corrupt?: string } = {}) {
  for (const f of files) {
    hub.files.set(
      `/${repo}/resolve/${COMMIT}/${f.path}`,
      f.path === options.corrupt ? bytesOf(f.data.byteLength, 99) : f.data,
    );
  }
  const siblings = files.map((f) =>
    options.sizes === false
      ? { rfilename: f.path }
      : {
          rfilename: f.path,
          size: f.data.byteLength,
          blobId: f.lfs ? "ffffffffffffffffffffffffffffffffffffffff" : gitBlobSha1(f.data),
          ...(f.lfs ? { lfs: { sha256: sha256(f.data), size: f.data.byteLength, pointerSize: 134 } } : {}),
        },
  );
  hub.json.set(`/api/models/${repo}/revision/main`, { id: repo, sha: COMMIT, siblings });
  const tree = files.map((f) => ({
    type: "file",
    path: f.path,
    size: f.data.byteLength,
    oid: f.lfs ? "ffffffffffffffffffffffffffffffffffffffff" : gitBlobSha1(f.data),
    ...(f.lfs ? { lfs: { oid: sha256(f.data), size: f.data.byteLength, pointerSize: 134 } } : {}),
  }));
  // The tree listing comes in two pages, linked the way the Hub links them.
  const first = `/api/models/${repo}/tree/${COMMIT}`;
  const second = `${first}?recursive=true&cursor=page2`;
  hub.json.set(first, tree.slice(0, 1));
  hub.links.set(first, `<${hub.base}${second}>; rel="next"`);
  hub.json.set(second, tree.slice(1));
}

let n = 0;
function config(): PullConfig {
  n += 1;
  return {
    modelCacheDir: join(root, `c${n}`),
    modelCacheMaxSizeGb: 100,
    modelPullMaxAttempts: 1,
    modelPullBaseDelayMs: 1,
    modelPullMaxDelayMs: 1,
  };
}

const MODEL_FILES: RepoFile[] = [
  { path: "config.json", data: enc.encode('{"architectures":["MixtralForCausalLM"]}'), lfs: false },
  { path: "tokenizer.json", data: enc.encode('{"version":"1.0"}'), lfs: false },
  { path: "model-00001-of-00002.safetensors", data: bytesOf(70_000, 1), lfs: true },
  { path: "model-00002-of-00002.safetensors", data: bytesOf(30_000, 2), lfs: true },
  { path: "pytorch_model.bin", data: bytesOf(90_000, 3), lfs: true },
  { path: "original/consolidated.pt", data: bytesOf(10_000, 4), lfs: true },
];

describe("pulling hf://org/name from a Hugging Face-style hub", () => {
  test("HF_ENDPOINT and HF_TOKEN are honoured; one weight format is taken, every file verified", async () => {
    publishRepo("org/mix", MODEL_FILES);
    hub.requireToken = "hf_test_token";
    try {
      const source = resolveSource("hf://org/mix", {
        env: { HF_ENDPOINT: hub.base, HF_TOKEN: "hf_test_token" },
      });
      assert.doesNotMatch(source.description, /hf_test_token/, "the token never appears in descriptions");
      const cfg = config();
      const result = await pullModel({ source, config: cfg });
      assert.equal(result.name, "org/mix");
      assert.equal(result.revision, COMMIT);
      assert.equal(result.path, join(cfg.modelCacheDir, "org--mix"));
      for (const f of MODEL_FILES.slice(0, 4)) {
        assert.deepEqual(readFileSync(join(result.path, f.path)), Buffer.from(f.data), f.path);
      }
      assert.ok(
        !existsSync(join(result.path, "pytorch_model.bin")),
        "the .bin copy of the weights is skipped",
      );
      assert.ok(!existsSync(join(result.path, "original")), "the .pt copy of the weights is skipped");
      assert.deepEqual(hub.stats(`/org/mix/resolve/${COMMIT}/config.json`).authorization, [
        "Bearer hf_test_token",
      ]);
      assert.equal(hub.stats(`/org/mix/resolve/${COMMIT}/pytorch_model.bin`).requests, 0);
    } finally {
      hub.requireToken = undefined;
    }
  });

  test("a private repository without HF_TOKEN fails at once and says to set it", async () => {
    publishRepo("org/private", MODEL_FILES.slice(0, 1));
    hub.requireToken = "needed";
    try {
      const source = resolveSource("hf://org/private", { env: { HF_ENDPOINT: hub.base } });
      await assert.rejects(pullModel({ source, config: config() }), (err: PullError) => {
        assert.equal(err.code, "XIM_PULL_REFUSED");
        assert.match(err.message, /HTTP 401.*Invalid credentials/);
        assert.match(err.hint ?? "", /set HF_TOKEN/);
        return true;
      });
      assert.equal(hub.stats("/api/models/org/private/revision/main").requests, 1, "no retry of a 401");
    } finally {
      hub.requireToken = undefined;
    }
  });

  test("a hub that omits sizes in the listing is read through the tree API's lfs.oid, page by page", async () => {
    publishRepo("org/tree", MODEL_FILES.slice(0, 3), { sizes: false });
    const source = resolveSource("hf://org/tree", { env: { HF_ENDPOINT: hub.base } });
    const result = await pullModel({ source, config: config() });
    assert.equal(hub.stats(`/api/models/org/tree/tree/${COMMIT}`).requests, 2, "both pages were read");
    assert.equal(
      result.sizeBytes,
      MODEL_FILES.slice(0, 3).reduce((s, f) => s + f.data.byteLength, 0),
    );
  });

  test("a small file whose git blob id does not match is rejected", async () => {
    publishRepo("org/badblob", MODEL_FILES.slice(0, 3), { corrupt: "config.json" });
    const source = resolveSource("hf://org/badblob", { env: { HF_ENDPOINT: hub.base } });
    const cfg = config();
    await assert.rejects(pullModel({ source, config: cfg, sleep: async () => {} }), (err: PullError) => {
      assert.equal(err.code, "XIM_PULL_CHECKSUM");
      assert.match(err.message, /config\.json: git-sha1 mismatch/);
      return true;
    });
    assert.ok(!existsSync(join(cfg.modelCacheDir, "org--badblob")));
  });
});

test("hub references: org/name, an optional revision, nothing else", () => {
  assert.deepEqual(parseHfRef("hf://Qwen/Qwen3-0.6B"), { repo: "Qwen/Qwen3-0.6B", revision: "main" });
  assert.deepEqual(parseHfRef("hf://org/m@v1.0"), { repo: "org/m", revision: "v1.0" });
  assert.deepEqual(parseHfRef("hf://gpt2"), { repo: "gpt2", revision: "main" });
  assert.throws(() => parseHfRef("hf://a/b/c"), /not a hub reference/);
  assert.throws(() => parseHfRef("hf://"), /not a hub reference/);
  assert.throws(() => resolveSource("ftp://x", { env: {} }), /not a model source/);
});

test("router:// needs the running node's connection; without it the command says so", () => {
  assert.throws(
    () => resolveSource("router://team/llama", { env: {} }),
    (err: PullError) => err.code === "XIM_UNAVAILABLE" && /router connection/.test(err.message),
  );
  const source = resolveSource("router://team/llama", { env: {}, routerChannel: async () => ({}) });
  assert.equal(source.description, "router://team/llama");
});
