/**
 * Attack: a model source (a hub or mirror behind HF_ENDPOINT, an HTTP
 * manifest, the router) lists file names that point outside the model
 * folder, collide with each other or carry terminal escapes. Every source's
 * names go through one check; the pull fails naming the bad path and no
 * byte lands outside the cache (a canary file sits where the traversal
 * points). Real loopback HTTP servers and a real ZeroMQ channel.
 */
import assert from "node:assert/strict";
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, test } from "node:test";
import { commands } from "../../src/cli/commands.ts";
import { recordingIo } from "../../src/cli/io.ts";
import { runCli } from "../../src/cli/program.ts";
import { gitBlobSha1 } from "../../src/models/checksum.ts";
import { ModelLibrary } from "../../src/models/library.ts";
import { type PullConfig, pullModel } from "../../src/models/pull.ts";
import { resolveSource } from "../../src/models/resolve-source.ts";
import type { PullError } from "../../src/models/source.ts";
import { RouterSource } from "../../src/models/sources/router.ts";
import type { ManifestFile } from "../../src/protocol/manifest.ts";
import { FileServer, sha256 } from "../models/helpers/file-server.ts";
import { modelChannel, modelRouter } from "../models/helpers/zmq-channel.ts";

const root = mkdtempSync(join(tmpdir(), "xim-pull-traversal-"));
after(() => rmSync(root, { recursive: true, force: true }));
const hub = new FileServer();
before(() => hub.start());
after(() => hub.stop());

const COMMIT = "89abcdef0123456789abcdef0123456789abcdef";
const PAYLOAD = new TextEncoder().encode("ssh-ed25519 AAAA attacker@evil\n");
const CANARY = "the canary is untouched\n";

let n = 0;
/** A fresh cache folder inside its own folder, and a canary four levels above staging. */
function scene() {
  n += 1;
  const top = join(root, `s${n}`);
  mkdirSync(top, { recursive: true });
  // staging is <cache>/.xim/staging/<model>: four '..' reach `top`.
  const canary = join(top, "canary.txt");
  writeFileSync(canary, CANARY);
  const config: PullConfig = {
    modelCacheDir: join(top, "cache"),
    modelCacheMaxSizeGb: 100,
    modelPullMaxAttempts: 2,
    modelPullBaseDelayMs: 1,
    modelPullMaxDelayMs: 1,
  };
  return { top, canary, config };
}

const TRAVERSAL = "../../../../canary.txt";

/** The names every source must refuse, each with the part of the message that says why. */
const BAD_NAMES: Array<{ what: string; paths: string[]; reason: RegExp }> = [
  { what: "a '..' traversal", paths: [TRAVERSAL], reason: /'\.\.'/ },
  { what: "a '..' in the middle", paths: ["a/../../x"], reason: /'\.\.'/ },
  { what: "an absolute path", paths: ["/etc/cron.d/evil"], reason: /absolute/ },
  { what: "a backslash", paths: ["..\\..\\evil"], reason: /backslash/ },
  { what: "an empty segment", paths: ["a//b"], reason: /empty segment/ },
  { what: "a '.' segment", paths: ["./config.json"], reason: /'\.'/ },
  { what: "an empty name", paths: [""], reason: /empty/ },
  { what: "a NUL byte", paths: ["config.json\u0000.txt"], reason: /control character/ },
  { what: "a terminal escape", paths: ["\u001b]0;pwned\u0007x"], reason: /control character/ },
  { what: "a bidi override", paths: ["evil\u202egnp.exe"], reason: /control character/ },
  { what: "a name longer than the limit", paths: [`${"a".repeat(5000)}.bin`], reason: /longer than/ },
  { what: "a path deeper than the limit", paths: [`${"d/".repeat(100)}x`], reason: /deeper than/ },
  { what: "a duplicate", paths: ["config.json", "config.json"], reason: /twice/ },
  { what: "a case-folded duplicate", paths: ["Config.json", "config.JSON"], reason: /differ only in case/ },
  { what: "a file that is also a folder", paths: ["weights", "weights/part1"], reason: /also a folder/ },
  { what: "xim's own bookkeeping file", paths: [".xim-pull.json"], reason: /bookkeeping/ },
];

function manifestFiles(paths: string[]): ManifestFile[] {
  return paths.map((path) => ({ path, size: PAYLOAD.byteLength, sha256: sha256(PAYLOAD) }));
}

/** Publish a hub repository whose listing names `paths`; every name resolves to the payload. */
function publishHub(repo: string, paths: string[]) {
  hub.json.set(`/api/models/${repo}/revision/main`, {
    id: repo,
    sha: COMMIT,
    siblings: paths.map((p) => ({ rfilename: p, size: PAYLOAD.byteLength, blobId: gitBlobSha1(PAYLOAD) })),
  });
  // The URL parser folds "/resolve/<commit>/../../../../canary.txt" to "/canary.txt".
  hub.files.set("/canary.txt", PAYLOAD);
  for (const p of paths) hub.files.set(`/${repo}/resolve/${COMMIT}/${p}`, PAYLOAD);
}

function assertRefused(err: PullError, path: string, reason: RegExp) {
  assert.equal(err.code, "XIM_PULL_BAD_MANIFEST", err.message);
  assert.equal(err.retryable, false, "a bad listing is final, not retried");
  const shown =
    path.length > 60 ? path.slice(0, 40) : path.replace(/[\u0000-\u001f\u007f-\u009f\u202e]/g, "");
  assert.ok(err.message.replace(/\ufffd/g, "").includes(shown), `the message names the path: ${err.message}`);
  assert.match(err.message, reason);
  assert.doesNotMatch(err.message, /[\u0000-\u0008\u000b-\u001f\u007f-\u009f\u202a-\u202e]/, "printable");
}

function assertNothingEscaped(s: ReturnType<typeof scene>) {
  assert.equal(readFileSync(s.canary, "utf8"), CANARY, "the canary outside the cache is untouched");
  assert.ok(!existsSync(join(s.top, "etc")), "nothing was created beside the cache");
}

describe("a hub (HF_ENDPOINT) that lists hostile file names", () => {
  test("a hub listing ../../../../canary.txt cannot overwrite a file outside the cache", async () => {
    const s = scene();
    publishHub("evil/traverse", ["config.json", TRAVERSAL]);
    hub.files.set(`/evil/traverse/resolve/${COMMIT}/config.json`, PAYLOAD);
    const source = resolveSource("hf://evil/traverse", { env: { HF_ENDPOINT: hub.base } });
    await assert.rejects(pullModel({ source, config: s.config, sleep: async () => {} }), (err: PullError) => {
      assertRefused(err, TRAVERSAL, /'\.\.'/);
      return true;
    });
    assertNothingEscaped(s);
    assert.equal(hub.stats("/canary.txt").requests, 0, "no file was fetched from a hostile listing");
  });

  test("xim pull hf:// against such a hub exits 1 naming the path, and the canary is untouched", async () => {
    const s = scene();
    publishHub("evil/cli", ["config.json", TRAVERSAL]);
    hub.files.set(`/evil/cli/resolve/${COMMIT}/config.json`, PAYLOAD);
    const rec = recordingIo({ HOME: s.top, HF_ENDPOINT: hub.base }, s.top);
    const cli = { version: () => "0.0.0", verboseVersion: async () => "", commands };
    const code = await runCli(
      ["pull", "hf://evil/cli", "--model-cache-dir", s.config.modelCacheDir],
      rec.io,
      cli,
    );
    assert.equal(code, 1, rec.stderr());
    assert.match(
      rec.stderr(),
      /xim: hf:\/\/evil\/cli@main .* lists a model that cannot be placed: files\.1\.path: "\.\.\/\.\.\/\.\.\/\.\.\/canary\.txt" has a '\.\.' segment/,
    );
    assert.doesNotMatch(rec.stderr(), /internal error/);
    assertNothingEscaped(s);
  });

  for (const bad of BAD_NAMES) {
    test(`a hub listing ${bad.what} is refused, naming the path`, async () => {
      const s = scene();
      const repo = `evil/names${n}`;
      publishHub(repo, bad.paths);
      const source = resolveSource(`hf://${repo}`, { env: { HF_ENDPOINT: hub.base } });
      await assert.rejects(
        pullModel({ source, config: s.config, sleep: async () => {} }),
        (err: PullError) => {
          assertRefused(err, bad.paths.at(-1) as string, bad.reason);
          return true;
        },
      );
      assertNothingEscaped(s);
    });
  }

  test("a hub whose tree API lists ../ names is refused the same way", async () => {
    const s = scene();
    hub.json.set("/api/models/evil/tree/revision/main", {
      sha: COMMIT,
      siblings: [{ rfilename: "config.json" }, { rfilename: "x" }],
    });
    hub.json.set(`/api/models/evil/tree/tree/${COMMIT}`, [
      { type: "file", path: "config.json", size: PAYLOAD.byteLength, oid: gitBlobSha1(PAYLOAD) },
      { type: "file", path: TRAVERSAL, size: PAYLOAD.byteLength, oid: gitBlobSha1(PAYLOAD) },
    ]);
    const source = resolveSource("hf://evil/tree", { env: { HF_ENDPOINT: hub.base } });
    await assert.rejects(pullModel({ source, config: s.config, sleep: async () => {} }), (err: PullError) => {
      assertRefused(err, TRAVERSAL, /'\.\.'/);
      return true;
    });
    assertNothingEscaped(s);
  });
});

describe("an HTTP manifest that lists hostile file names", () => {
  test("a manifest listing ../../../../canary.txt cannot overwrite a file outside the cache", async () => {
    const s = scene();
    hub.json.set("/m/traverse/manifest.json", { name: "traverse", files: manifestFiles([TRAVERSAL]) });
    const source = resolveSource(`${hub.base}/m/traverse/manifest.json`, { env: {} });
    await assert.rejects(pullModel({ source, config: s.config, sleep: async () => {} }), (err: PullError) => {
      assertRefused(err, TRAVERSAL, /'\.\.'/);
      return true;
    });
    assertNothingEscaped(s);
  });

  for (const bad of BAD_NAMES) {
    test(`a manifest listing ${bad.what} is refused, naming the path`, async () => {
      const s = scene();
      hub.json.set(`/m/${n}/manifest.json`, { name: `bad${n}`, files: manifestFiles(bad.paths) });
      const source = resolveSource(`${hub.base}/m/${n}/manifest.json`, { env: {} });
      await assert.rejects(
        pullModel({ source, config: s.config, sleep: async () => {} }),
        (err: PullError) => {
          assertRefused(err, bad.paths.at(-1) as string, bad.reason);
          return true;
        },
      );
      assertNothingEscaped(s);
    });
  }
});

describe("a router that lists hostile file names (real ZeroMQ)", () => {
  for (const bad of [BAD_NAMES[0], ...BAD_NAMES.slice(12)]) {
    test(`a router manifest listing ${bad.what} is refused at once, naming the path`, {
      timeout: 30_000,
    }, async () => {
      const s = scene();
      const dir = join(s.top, "published");
      mkdirSync(dir);
      writeFileSync(join(dir, "config.json"), "{}");
      const library = new ModelLibrary(join(s.top, "router-state"));
      await library.add("evil", dir);
      const router = await modelRouter(library, (_req, reply) =>
        reply.type === "model_manifest"
          ? { ...reply, manifest: { name: "evil", files: manifestFiles(bad.paths) } }
          : reply,
      );
      const node = await modelChannel(router.endpoint);
      try {
        await assert.rejects(
          pullModel({
            source: new RouterSource("evil", node.channel),
            config: s.config,
            sleep: async () => {},
          }),
          (err: PullError) => {
            assertRefused(err, bad.paths.at(-1) as string, bad.reason);
            return true;
          },
        );
        const asked = router.requests.filter((r) => r.type === "model_manifest_request").length;
        assert.equal(asked, 1, "a hostile manifest is not asked for again");
        assert.equal(router.requests.length, 1, "no chunk was requested");
      } finally {
        await node.close();
        await router.close();
      }
      assertNothingEscaped(s);
    });
  }
});
