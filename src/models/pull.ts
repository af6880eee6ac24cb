/**
 * @module `pullModel`: fetch a model from a `ModelSource` into the cache.
 * The contract:
 * - the manifest and every file are retried with backoff (retry.ts);
 * - a broken transfer resumes from the bytes on disk, also across processes
 *   (the staging folder is kept, and guarded by the pull lock);
 * - every file is checked (size, and sha256 or git blob id) before the
 *   model is placed; the model folder appears with one rename, complete;
 * - two pulls of one model do not race: the second waits for the first
 *   (then finds the model cached) or, with `wait: false`, fails at once;
 * - room is made (LRU eviction) and disk space checked before any byte
 *   moves; a model that cannot fit fails with the numbers;
 * - every source's file names pass one check (manifest.ts) and nothing is
 *   written or removed outside the staging folder (staging.ts);
 * - a disk that fills up or refuses writes is explained, not a crash
 *   (disk-errors.ts).
 * `xim pull` and `xim run` (router-assigned models) both call this.
 */
import { stat } from "node:fs/promises";
import { dirname, join } from "node:path";
import type { Sleep } from "../core/backoff.ts";
import { formatBytes } from "../core/bytes-text.ts";
import type { Config } from "../core/config/schema.ts";
import { XimError } from "../core/errors.ts";
import { safeText } from "../core/terminal-text.ts";
import { type ManifestFile, manifestBytes, sameFiles } from "../protocol/manifest.ts";
import { type CacheRecord, ModelCache } from "./cache.ts";
import { FileHasher } from "./checksum.ts";
import { diskError } from "./disk-errors.ts";
import { acquireLock } from "./lock.ts";
import { parseManifest } from "./parse-manifest.ts";
import { type PullEvent, RateMeter } from "./progress.ts";
import { type Attempt, retryPolicy, withRetry } from "./retry.ts";
import { type ModelSource, PullError } from "./source.ts";
import { finishStaging, openStagedFile, prepareStaging, removeStaged, stagedSize } from "./staging.ts";

export type PullConfig = Pick<
  Config,
  | "modelCacheDir"
  | "modelCacheMaxSizeGb"
  | "modelPullMaxAttempts"
  | "modelPullBaseDelayMs"
  | "modelPullMaxDelayMs"
>;

export interface PullOptions {
  source: ModelSource;
  config: PullConfig;
  /** Cache the model under this name instead of the manifest's. */
  name?: string;
  /** Wait for another pull of the same model (default), or fail at once. */
  wait?: boolean;
  /** Download again even when the cache already holds these exact files. */
  force?: boolean;
  onEvent?: (event: PullEvent) => void;
  signal?: AbortSignal;
  sleep?: Sleep;
  random?: () => number;
  now?: () => number;
  /** Least time between progress events. */
  progressIntervalMs?: number;
}

export interface PullResult {
  name: string;
  path: string;
  revision?: string;
  sizeBytes: number;
  downloadedBytes: number;
  alreadyCached: boolean;
  evicted: string[];
}

export async function pullModel(options: PullOptions): Promise<PullResult> {
  const track: PullTrack = {};
  try {
    return await pull(options, track);
  } catch (err) {
    throw (
      (await diskError(err, {
        cacheDir: options.config.modelCacheDir,
        name: track.name,
        bytesLeft: track.bytesLeft?.(),
      })) ?? err
    );
  }
}

/** What a failed pull's error message needs to know of how far it got. */
interface PullTrack {
  name?: string;
  bytesLeft?: () => number;
}

/** What every step of one pull shares. */
interface PullContext {
  options: PullOptions;
  now: () => number;
  emit: (event: PullEvent) => void;
  cache: ModelCache;
  /** Retry settings for one model's requests; retries are reported under its name. */
  retry: (name: string) => Parameters<typeof withRetry>[1];
}

async function openPull(options: PullOptions): Promise<PullContext> {
  const now = options.now ?? Date.now;
  const emit = options.onEvent ?? (() => {});
  const cache = new ModelCache(options.config, now);
  await cache.init();
  const policy = retryPolicy(options.config);
  const retry = (name: string) => ({
    policy,
    sleep: options.sleep,
    random: options.random,
    signal: options.signal,
    onRetry: (r: { retry: number; maxAttempts: number; delayMs: number; reason: string }) =>
      emit({ type: "retry", name, ...r }),
  });
  return { options, now, emit, cache, retry };
}

/** The source's manifest; whatever the source, its file names pass the one check before any reaches the disk. */
async function fetchManifest(ctx: PullContext) {
  const { source, signal, name } = ctx.options;
  const raw = await withRetry(() => source.manifest(signal), ctx.retry(name ?? source.description));
  return parseManifest(raw, source.description);
}

type Manifest = Awaited<ReturnType<typeof fetchManifest>>;

/** The cached copy when it holds exactly these files (and --force is not given); refuses a folder xim did not place. */
async function cachedResult(
  ctx: PullContext,
  name: string,
  manifest: Manifest,
): Promise<PullResult | undefined> {
  const { cache, options } = ctx;
  const record = await cache.readRecord(name);
  const path = cache.modelDir(name);
  if (options.force || !(await exists(path))) return undefined;
  if (!record) {
    throw new XimError(
      "XIM_PULL_EXISTS",
      `${path} already exists and was not placed by xim pull; it is left alone`,
      { hint: "pull under another name (--name), remove that folder, or replace it with --force" },
    );
  }
  if (!sameFiles(record, manifest)) return undefined;
  await cache.touch(name);
  const totalBytes = manifestBytes(manifest);
  ctx.emit({ type: "cached", name, path, totalBytes });
  return {
    name,
    path,
    revision: record.revision,
    sizeBytes: totalBytes,
    downloadedBytes: 0,
    alreadyCached: true,
    evicted: [],
  };
}

/** The staging folder with what an earlier pull left, and room made for the rest (evicting, then checking free space). */
async function prepareRoom(ctx: PullContext, name: string, manifest: Manifest, track: PullTrack) {
  const { cache } = ctx;
  const totalBytes = manifestBytes(manifest);
  const staging = cache.stagingDir(name);
  const resumedBytes = await prepareStaging([join(cache.root, ".xim"), dirname(staging)], staging, manifest);
  track.bytesLeft = () => totalBytes - resumedBytes;
  const evicted = await cache.makeRoom(name, totalBytes);
  for (const m of evicted) ctx.emit({ type: "evicted", name: m.name, sizeBytes: m.sizeBytes });
  const free = await cache.freeBytes();
  if (free < totalBytes - resumedBytes) {
    throw new XimError(
      "XIM_CACHE_DISK",
      `${name} needs ${formatBytes(totalBytes - resumedBytes)} more on disk; the filesystem of ${cache.root} has ${formatBytes(free)} free`,
      { hint: "free disk space, or point XEROTIER_AGENT_MODEL_CACHE_DIR at a larger disk" },
    );
  }
  return { staging, resumedBytes, evicted };
}

/** Every file of the manifest into staging, each verified; returns the bytes fetched. */
async function downloadAll(
  ctx: PullContext,
  name: string,
  manifest: Manifest,
  staging: string,
  progress: Progress,
): Promise<number> {
  let downloadedBytes = 0;
  for (const file of manifest.files) {
    downloadedBytes += await downloadFile({
      source: ctx.options.source,
      file,
      staging,
      progress,
      signal: ctx.options.signal,
      retry: ctx.retry(name),
    });
    const check = file.sha256 ? "sha256" : file.gitSha1 ? "git-sha1" : "size";
    ctx.emit({ type: "verified", name, file: file.path, check });
  }
  return downloadedBytes;
}

/** Move the verified files into the cache and write the record that says what they are. */
async function placeAndRecord(ctx: PullContext, name: string, manifest: Manifest, staging: string) {
  await finishStaging(staging);
  const path = await ctx.cache.place(name, staging);
  const at = new Date(ctx.now()).toISOString();
  const record: CacheRecord = {
    name,
    source: ctx.options.source.description,
    revision: manifest.revision,
    files: manifest.files,
    sizeBytes: manifestBytes(manifest),
    pulledAt: at,
    lastUsedAt: at,
  };
  await ctx.cache.writeRecord(record);
  return path;
}

async function pull(options: PullOptions, track: PullTrack): Promise<PullResult> {
  const ctx = await openPull(options);
  const started = ctx.now();
  const manifest = await fetchManifest(ctx);
  const name = options.name ?? manifest.name;
  track.name = name;
  const totalBytes = manifestBytes(manifest);
  const source = options.source.description;
  ctx.emit({ type: "manifest", name, source, files: manifest.files.length, totalBytes });
  const lock = await acquireLock(ctx.cache.lockPath(name), {
    what: name,
    wait: options.wait ?? true,
    sleep: options.sleep,
    signal: options.signal,
    now: ctx.now,
    onWait: (owner) =>
      ctx.emit({ type: "waiting", name, owner: owner ? `process ${owner.pid} on ${owner.host}` : undefined }),
  });
  try {
    const cached = await cachedResult(ctx, name, manifest);
    if (cached) return cached;
    const { staging, resumedBytes, evicted } = await prepareRoom(ctx, name, manifest, track);
    ctx.emit({ type: "start", name, totalBytes, resumedBytes });
    const progress = new Progress(name, totalBytes, ctx.emit, ctx.now, options.progressIntervalMs ?? 250);
    track.bytesLeft = () => progress.bytesLeft;
    const downloadedBytes = await downloadAll(ctx, name, manifest, staging, progress);
    const path = await placeAndRecord(ctx, name, manifest, staging);
    const seconds = (ctx.now() - started) / 1000;
    ctx.emit({ type: "done", name, path, totalBytes, downloadedBytes, seconds });
    const evictedNames = evicted.map((m) => m.name);
    return {
      name,
      path,
      revision: manifest.revision,
      sizeBytes: totalBytes,
      downloadedBytes,
      alreadyCached: false,
      evicted: evictedNames,
    };
  } finally {
    await lock.release();
  }
}

async function exists(path: string): Promise<boolean> {
  try {
    await stat(path);
    return true;
  } catch {
    return false;
  }
}

class Progress {
  #done = 0;
  #current = 0;
  #last = Number.NEGATIVE_INFINITY;
  readonly #meter = new RateMeter();
  readonly #name: string;
  readonly #total: number;
  readonly #emit: (e: PullEvent) => void;
  readonly #now: () => number;
  readonly #interval: number;

  constructor(
    name: string,
    total: number,
    emit: (e: PullEvent) => void,
    now: () => number,
    interval: number,
  ) {
    this.#name = name;
    this.#total = total;
    this.#emit = emit;
    this.#now = now;
    this.#interval = interval;
  }

  /** The current file has `bytes` on disk. */
  update(file: string, bytes: number, force = false): void {
    this.#current = bytes;
    const t = this.#now();
    const all = this.#done + this.#current;
    const rate = this.#meter.sample(t, all);
    if (!force && t - this.#last < this.#interval) return;
    this.#last = t;
    const left = this.#total - all;
    this.#emit({
      type: "progress",
      name: this.#name,
      file,
      bytes: all,
      totalBytes: this.#total,
      rateBytesPerSec: Math.round(rate),
      etaSeconds: left <= 0 ? 0 : rate > 0 ? Math.round(left / rate) : null,
    });
  }

  /** Bytes of the model not yet on disk. */
  get bytesLeft(): number {
    return Math.max(0, this.#total - this.#done - this.#current);
  }

  fileDone(file: string, size: number): void {
    this.update(file, size, true);
    this.#done += size;
    this.#current = 0;
  }
}

interface DownloadArgs {
  source: ModelSource;
  file: ManifestFile;
  /** The staging folder; the file goes to `staging/file.path`. */
  staging: string;
  progress: Progress;
  signal?: AbortSignal;
  retry: Parameters<typeof withRetry>[1];
}

/**
 * One file's download across retries: the running hash of what is staged,
 * the bytes fetched, and how many checksum failures were seen (the first
 * is retried once from scratch, the second is the source's fault).
 */
class FileDownload {
  readonly #args: DownloadArgs;
  readonly #file: ManifestFile;
  #hasher: FileHasher | undefined;
  #mismatches = 0;
  fetched = 0;

  constructor(args: DownloadArgs) {
    this.#args = args;
    this.#file = args.file;
  }

  /** One attempt: resume from what is staged, fetch the rest, check the whole file. */
  async attempt(attempt: Attempt): Promise<void> {
    const onDisk = await this.#resumePoint();
    this.#args.progress.update(this.#file.path, onDisk);
    if (onDisk < this.#file.size) await this.#fetch(onDisk, attempt);
    await this.#verify();
  }

  /** The bytes already staged, with the hash brought up to them (a staged file too long is discarded). */
  async #resumePoint(): Promise<number> {
    const { staging } = this.#args;
    const file = this.#file;
    let onDisk = await stagedSize(staging, file.path);
    if (onDisk > file.size) {
      await removeStaged(staging, file.path);
      onDisk = 0;
    }
    if (!this.#hasher || this.#hasher.bytes !== onDisk) {
      this.#hasher = new FileHasher(file);
      await this.#hasher.updateFromFile(join(staging, file.path), onDisk);
    }
    return onDisk;
  }

  async #fetch(from: number, attempt: Attempt): Promise<void> {
    const { staging, progress } = this.#args;
    const file = this.#file;
    const got = await this.#args.source.fetchFile(file, from, this.#args.signal);
    // The far end cannot resume: start the file over.
    const append = got.start === from && from > 0;
    if (got.start !== from) this.#hasher = new FileHasher(file);
    const hasher = this.#hasher as FileHasher;
    const handle = await openStagedFile(staging, file.path, append);
    try {
      for await (const chunk of got.body) {
        if (hasher.bytes + chunk.byteLength > file.size)
          throw this.#checksumError(
            `the source sent more than the ${file.size} bytes the manifest lists`,
            false,
          );
        await handle.write(chunk);
        hasher.update(chunk);
        this.fetched += chunk.byteLength;
        attempt.progressed();
        progress.update(file.path, hasher.bytes);
      }
    } catch (err) {
      if (err instanceof PullError && err.code === "XIM_PULL_CHECKSUM") {
        await handle.close();
        await this.#discard();
      }
      throw err;
    } finally {
      await handle.close().catch(() => {});
    }
  }

  /** A complete file whose size and checksum match the manifest, else a retryable (or final) error. */
  async #verify(): Promise<void> {
    const hasher = this.#hasher as FileHasher;
    const file = this.#file;
    if (hasher.bytes < file.size) {
      throw new PullError(
        "XIM_PULL_NETWORK",
        `${safeText(file.path)}: the transfer ended at ${hasher.bytes} of ${file.size} bytes`,
        { retryable: true },
      );
    }
    const check = hasher.check();
    if (check.ok) return;
    await this.#discard();
    const mismatch = `${check.kind} mismatch: expected ${check.expected}, got ${check.actual}`;
    throw this.#checksumError(`${mismatch}; the file was discarded`, true);
  }

  async #discard(): Promise<void> {
    await removeStaged(this.#args.staging, this.#file.path);
    this.#hasher = undefined;
  }

  /**
   * The first checksum failure is retried from scratch; a second one means
   * the source serves other bytes than it lists, which retrying cannot fix.
   */
  #checksumError(problem: string, hintAtSource: boolean): PullError {
    const first = this.#mismatches++ === 0;
    return new PullError("XIM_PULL_CHECKSUM", `${safeText(this.#file.path)}: ${problem}`, {
      retryable: first,
      countAttempt: true,
      hint:
        first || !hintAtSource
          ? undefined
          : "the source serves different bytes than its manifest lists: fix the source or its manifest",
    });
  }
}

/** Download one file into staging, resuming from what is there; returns the bytes fetched. */
async function downloadFile(args: DownloadArgs): Promise<number> {
  const download = new FileDownload(args);
  await withRetry((attempt) => download.attempt(attempt), args.retry);
  args.progress.fileDone(args.file.path, args.file.size);
  return download.fetched;
}
