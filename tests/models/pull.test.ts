import assert from "node:assert/strict";
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, test } from "node:test";
import { sleep as realSleep } from "../../src/core/backoff.ts";
import type { PullEvent } from "../../src/models/progress.ts";
import { type PullConfig, pullModel } from "../../src/models/pull.ts";
import type { PullError } from "../../src/models/source.ts";
import { HttpManifestSource } from "../../src/models/sources/http-manifest.ts";
import { bytesOf, FileServer, sha256 } from "./helpers/file-server.ts";

const root = mkdtempSync(join(tmpdir(), "xim-pull-"));
after(() => rmSync(root, { recursive: true, force: true }));
let n = 0;

function config(over: Partial<PullConfig> = {}): PullConfig {
  n += 1;
  return {
    modelCacheDir: join(root, `cache-${n}`),
    modelCacheMaxSizeGb: 100,
    modelPullMaxAttempts: 5,
    modelPullBaseDelayMs: 1000,
    modelPullMaxDelayMs: 15000,
    ...over,
  };
}

/** A sleep that records what it was asked and returns at once. */
function fakeSleep() {
  const waits: number[] = [];
  return { waits, sleep: async (ms: number) => void waits.push(ms) };
}

/**
 * The bytes the pull reports written, followed through its progress events
 * (`progressIntervalMs: 0`: one per chunk): `reached(n)` settles once `n`
 * bytes of the model are on disk. A cut that waits for it leaves nothing in
 * flight, so the resume offset is exact rather than a matter of how much the
 * client read before the connection died.
 */
function writtenBytes() {
  let bytes = 0;
  const waiters: Array<{ n: number; resolve: () => void }> = [];
  const onEvent = (e: PullEvent) => {
    if (e.type !== "progress") return;
    bytes = e.bytes;
    for (const w of waiters.filter((x) => x.n <= bytes)) {
      waiters.splice(waiters.indexOf(w), 1);
      w.resolve();
    }
  };
  const reached = (n: number) =>
    n <= bytes ? Promise.resolve() : new Promise<void>((resolve) => waiters.push({ n, resolve }));
  return { onEvent, reached, progressIntervalMs: 0 };
}

const server = new FileServer();
before(() => server.start());
after(() => server.stop());

/** Publish a model under /NAME/ with a manifest; returns the manifest URL. */
function publish(
  name: string,
  files: Record<string, Uint8Array>,
  extra: Record<string, unknown> = {},
): string {
  for (const [path, data] of Object.entries(files)) server.files.set(`/${name}/${path}`, data);
  server.json.set(`/${name}/manifest.json`, {
    name,
    files: Object.entries(files).map(([path, data]) => ({
      path,
      size: data.byteLength,
      sha256: sha256(data),
    })),
    ...extra,
  });
  return `${server.base}/${name}/manifest.json`;
}

describe("pulling from an HTTP file manifest", () => {
  test("a model is downloaded, verified and placed with a record", async () => {
    const cfg = config();
    const weights = bytesOf(300_000);
    const url = publish("plain", {
      "config.json": new TextEncoder().encode('{"a":1}'),
      "sub/model.safetensors": weights,
    });
    const events: PullEvent[] = [];
    const result = await pullModel({
      source: new HttpManifestSource(url),
      config: cfg,
      onEvent: (e) => events.push(e),
    });
    assert.equal(result.path, join(cfg.modelCacheDir, "plain"));
    assert.equal(result.alreadyCached, false);
    assert.deepEqual(readFileSync(join(result.path, "sub/model.safetensors")), Buffer.from(weights));
    assert.equal(readFileSync(join(result.path, "config.json"), "utf8"), '{"a":1}');
    assert.ok(
      !existsSync(join(result.path, ".xim-pull.json")),
      "the staging note is not placed with the model",
    );
    assert.deepEqual(readdirSync(join(cfg.modelCacheDir, ".xim", "staging")), [], "nothing left in staging");
    assert.deepEqual(
      events.filter((e) => e.type === "verified").map((e) => (e as { check: string }).check),
      ["sha256", "sha256"],
    );
    const done = events.at(-1);
    assert.equal(done?.type, "done");
    const progress = events.filter((e) => e.type === "progress");
    assert.equal(progress.at(-1)?.type === "progress" && progress.at(-1)?.bytes, weights.byteLength + 7);

    const again = await pullModel({ source: new HttpManifestSource(url), config: cfg });
    assert.equal(again.alreadyCached, true, "the same files are not downloaded twice");
    assert.equal(again.downloadedBytes, 0);
  });

  test("503 with Retry-After is retried after the time the server asked for", async () => {
    const url = publish("busy", { "a.bin": bytesOf(1000) });
    server.faults.set("/busy/manifest.json", { failFirst: 2, status: 503, retryAfter: "7" });
    const { waits, sleep } = fakeSleep();
    const result = await pullModel({ source: new HttpManifestSource(url), config: config(), sleep });
    assert.deepEqual(waits, [7000, 7000]);
    assert.equal(server.stats("/busy/manifest.json").requests, 3);
    assert.ok(existsSync(join(result.path, "a.bin")));
  });

  test("429 on a file is retried, honouring Retry-After", async () => {
    const url = publish("limited", { "w.safetensors": bytesOf(5000) });
    server.faults.set("/limited/w.safetensors", { failFirst: 1, status: 429, retryAfter: "3" });
    const { waits, sleep } = fakeSleep();
    const events: PullEvent[] = [];
    await pullModel({
      source: new HttpManifestSource(url),
      config: config(),
      sleep,
      onEvent: (e) => events.push(e),
    });
    assert.deepEqual(waits, [3000]);
    const retry = events.find((e) => e.type === "retry");
    assert.match(retry?.type === "retry" ? retry.reason : "", /HTTP 429/);
  });

  test("without Retry-After the waits follow the documented 1, 2, 4, 8, 15 s, then the pull gives up", async () => {
    const url = publish("down", { "a.bin": bytesOf(10) });
    server.faults.set("/down/manifest.json", { failFirst: 1000, status: 502 });
    const { waits, sleep } = fakeSleep();
    await assert.rejects(
      pullModel({ source: new HttpManifestSource(url), config: config(), sleep, random: () => 0 }),
      (err: PullError) => {
        assert.equal(err.code, "XIM_PULL_FAILED");
        assert.match(err.message, /gave up after 6 tries/);
        assert.match(err.message, /HTTP 502/);
        return true;
      },
    );
    assert.deepEqual(waits, [1000, 2000, 4000, 8000, 15000]);
    assert.equal(server.stats("/down/manifest.json").requests, 6);
  });

  test("a 4xx other than 408/429 fails at once with the server's reason", async () => {
    const url = publish("gone", { "a.bin": bytesOf(10) });
    server.faults.set("/gone/a.bin", {
      failFirst: 1,
      status: 403,
      body: JSON.stringify({ error: "access to this model is restricted" }),
    });
    const { waits, sleep } = fakeSleep();
    await assert.rejects(
      pullModel({ source: new HttpManifestSource(url), config: config(), sleep }),
      (err: PullError) => {
        assert.equal(err.code, "XIM_PULL_REFUSED");
        assert.match(err.message, /HTTP 403.*access to this model is restricted/);
        return true;
      },
    );
    assert.deepEqual(waits, []);
    assert.equal(server.stats("/gone/a.bin").requests, 1);
  });

  test("a transfer cut half-way resumes from the bytes on disk (HTTP Range)", {
    timeout: 30_000,
  }, async () => {
    const data = bytesOf(200_000, 7);
    const url = publish("cut", { "model.safetensors": data });
    const written = writtenBytes();
    server.faults.set("/cut/model.safetensors", { cutAfterBytes: 100_000, cutWhen: written.reached });
    const { waits, sleep } = fakeSleep();
    const result = await pullModel({
      source: new HttpManifestSource(url),
      config: config(),
      sleep,
      ...written,
    });
    const stats = server.stats("/cut/model.safetensors");
    assert.deepEqual(stats.ranges, ["", "bytes=100000-"]);
    assert.equal(stats.bytes, data.byteLength, "every byte was sent once: nothing restarted from zero");
    assert.equal(result.downloadedBytes, data.byteLength);
    assert.equal(waits.length, 1);
    assert.deepEqual(readFileSync(join(result.path, "model.safetensors")), Buffer.from(data));
  });

  test("a cut with bytes still in flight resumes from what reached the disk, and fetches only the rest", {
    timeout: 30_000,
  }, async () => {
    // The cut comes 20 ms after the server handed off its 100 000 bytes: how
    // many the client wrote before the connection died is up to the
    // scheduler (fetch drops what it had buffered but not yet delivered).
    // Whatever that is, the resume asks for exactly the bytes not on disk.
    const cfg = config();
    const data = bytesOf(200_000, 13);
    const url = publish("inflight", { "w.bin": data });
    server.faults.set("/inflight/w.bin", { cutAfterBytes: 100_000 });
    const onDiskAtRetry: number[] = [];
    const staged = join(cfg.modelCacheDir, ".xim", "staging", "inflight", "w.bin");
    const sleep = async () => void onDiskAtRetry.push(existsSync(staged) ? statSync(staged).size : 0);
    const result = await pullModel({ source: new HttpManifestSource(url), config: cfg, sleep });
    assert.equal(onDiskAtRetry.length, 1, "one retry");
    const [kept] = onDiskAtRetry;
    assert.ok(kept <= 100_000, `no more on disk (${kept}) than was sent`);
    const stats = server.stats("/inflight/w.bin");
    assert.deepEqual(
      stats.ranges,
      ["", kept > 0 ? `bytes=${kept}-` : ""],
      "the resume starts at the bytes on disk",
    );
    assert.equal(
      stats.bytes,
      100_000 + data.byteLength - kept,
      "only the bytes not written are fetched again",
    );
    assert.equal(result.downloadedBytes, data.byteLength, "every byte written once");
    assert.deepEqual(readFileSync(join(result.path, "w.bin")), Buffer.from(data));
  });

  test("a transfer cut many times, each time further, is progress and does not exhaust the retries", {
    timeout: 30_000,
  }, async () => {
    const data = bytesOf(60_000, 9);
    const url = publish("flaky", { "w.bin": data });
    const written = writtenBytes();
    server.faults.set("/flaky/w.bin", { cutAfterBytes: 8_000, cutTimes: 7, cutWhen: written.reached });
    const { waits, sleep } = fakeSleep();
    await pullModel({
      source: new HttpManifestSource(url),
      config: config({ modelPullMaxAttempts: 2 }),
      sleep,
      random: () => 0,
      ...written,
    });
    assert.equal(server.stats("/flaky/w.bin").bytes, data.byteLength);
    assert.deepEqual(
      waits,
      [1000, 1000, 1000, 1000, 1000, 1000, 1000],
      "each cut after progress starts the count again",
    );
  });

  test("a server that ignores Range restarts the file and the result is still exact", async () => {
    const data = bytesOf(50_000, 3);
    const url = publish("norange", { "w.bin": data });
    server.faults.set("/norange/w.bin", { cutAfterBytes: 20_000, ignoreRange: true });
    const result = await pullModel({
      source: new HttpManifestSource(url),
      config: config(),
      sleep: fakeSleep().sleep,
    });
    assert.deepEqual(readFileSync(join(result.path, "w.bin")), Buffer.from(data));
  });

  test("a corrupted file is rejected and nothing is placed", async () => {
    const cfg = config();
    const good = bytesOf(4000, 1);
    const url = publish("corrupt", { "config.json": new TextEncoder().encode("{}"), "w.safetensors": good });
    server.files.set("/corrupt/w.safetensors", bytesOf(4000, 2));
    const { sleep } = fakeSleep();
    await assert.rejects(
      pullModel({ source: new HttpManifestSource(url), config: cfg, sleep }),
      (err: PullError) => {
        assert.equal(err.code, "XIM_PULL_CHECKSUM");
        assert.match(err.message, /w\.safetensors: sha256 mismatch: expected [0-9a-f]{64}, got [0-9a-f]{64}/);
        return true;
      },
    );
    assert.equal(
      server.stats("/corrupt/w.safetensors").requests,
      2,
      "downloaded once more from zero, then given up",
    );
    assert.ok(!existsSync(join(cfg.modelCacheDir, "corrupt")), "no model folder appears");
    assert.ok(
      !existsSync(join(cfg.modelCacheDir, ".xim", "staging", "corrupt", "w.safetensors")),
      "the bad bytes are gone",
    );
    assert.ok(!existsSync(join(cfg.modelCacheDir, ".xim", "locks", "corrupt.lock")), "the lock is released");
  });

  test("a manifest that is not valid is refused with the field at fault", async () => {
    server.json.set("/badmanifest/manifest.json", { name: "x", files: [{ path: "../etc/passwd", size: 1 }] });
    await assert.rejects(
      pullModel({
        source: new HttpManifestSource(`${server.base}/badmanifest/manifest.json`),
        config: config(),
      }),
      (err: PullError) => err.code === "XIM_PULL_BAD_MANIFEST" && /files\.0\.path/.test(err.message),
    );
  });

  test("an interrupted pull resumes in the next process from its staging folder", {
    timeout: 30_000,
  }, async () => {
    const cfg = config();
    const data = bytesOf(120_000, 5);
    const url = publish("resume", { "w.bin": data });
    const written = writtenBytes();
    server.faults.set("/resume/w.bin", { cutAfterBytes: 50_000, cutWhen: written.reached });
    // The first pull stops after the cut: no retries allowed.
    await assert.rejects(
      pullModel({
        source: new HttpManifestSource(url),
        config: { ...cfg, modelPullMaxAttempts: 0 },
        ...written,
      }),
      (err: PullError) => err.code === "XIM_PULL_FAILED",
    );
    assert.ok(!existsSync(join(cfg.modelCacheDir, "resume")));
    const result = await pullModel({ source: new HttpManifestSource(url), config: cfg });
    assert.deepEqual(server.stats("/resume/w.bin").ranges, ["", "bytes=50000-"]);
    assert.equal(server.stats("/resume/w.bin").bytes, data.byteLength);
    assert.deepEqual(readFileSync(join(result.path, "w.bin")), Buffer.from(data));
  });
});

describe("two pulls of one model", () => {
  test("the second waits for the first and then finds the model cached", { timeout: 20_000 }, async () => {
    const cfg = config();
    const data = bytesOf(80_000, 11);
    const url = publish("twice", { "w.bin": data });
    let release!: () => void;
    server.faults.set("/twice/w.bin", { hold: new Promise<void>((r) => (release = r)) });
    const poll = (ms: number) => realSleep(Math.min(ms, 20));
    // Whichever takes the lock first holds its download until the other reports that it waits.
    const onEvent = (e: PullEvent) => e.type === "waiting" && release();
    const [a, b] = await Promise.all([
      pullModel({ source: new HttpManifestSource(url), config: cfg, sleep: poll, onEvent }),
      pullModel({ source: new HttpManifestSource(url), config: cfg, sleep: poll, onEvent }),
    ]);
    assert.deepEqual([a.alreadyCached, b.alreadyCached].sort(), [false, true]);
    assert.equal(a.path, b.path);
    assert.equal(server.stats("/twice/w.bin").requests, 1, "the file was downloaded once");
  });

  test("with --no-wait the second fails at once, naming the holder", { timeout: 20_000 }, async () => {
    const cfg = config();
    const url = publish("nowait", { "w.bin": bytesOf(1000) });
    let release!: () => void;
    let started!: () => void;
    const downloading = new Promise<void>((r) => (started = r));
    server.faults.set("/nowait/w.bin", { hold: new Promise<void>((r) => (release = r)) });
    const first = pullModel({
      source: new HttpManifestSource(url),
      config: cfg,
      onEvent: (e) => e.type === "start" && started(),
    });
    await downloading;
    await assert.rejects(
      pullModel({ source: new HttpManifestSource(url), config: cfg, wait: false }),
      (err: PullError) =>
        err.code === "XIM_PULL_LOCKED" && new RegExp(`process ${process.pid}`).test(err.message),
    );
    release();
    await first;
  });
});
