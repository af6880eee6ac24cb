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
import { retryPolicy, withRetry } from "./retry.ts";
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

async function pull(options: PullOptions, track: PullTrack): Promise<PullResult> {
  const now = options.now ?? Date.now;
  const started = now();
  const emit = options.onEvent ?? (() => {});
  const cache = new ModelCache(options.config, now);
  await cache.init();
  const policy = retryPolicy(options.config);
  const retryOptions = (name: string) => ({
    policy,
    sleep: options.sleep,
    random: options.random,
    signal: options.signal,
    onRetry: (r: { retry: number; maxAttempts: number; delayMs: number; reason: string }) =>
      emit({ type: "retry", name, ...r }),
  });

  // Whatever the source: its file names pass the one check before any reaches the disk.
  const manifest = parseManifest(
    await withRetry(
      () => options.source.manifest(options.signal),
      retryOptions(options.name ?? options.source.description),
    ),
    options.source.description,
  );
  const name = options.name ?? manifest.name;
  track.name = name;
  const totalBytes = manifestBytes(manifest);
  emit({
    type: "manifest",
    name,
    source: options.source.description,
    files: manifest.files.length,
    totalBytes,
  });

  const lock = await acquireLock(cache.lockPath(name), {
    what: name,
    wait: options.wait ?? true,
    sleep: options.sleep,
    signal: options.signal,
    now,
    onWait: (owner) =>
      emit({ type: "waiting", name, owner: owner ? `process ${owner.pid} on ${owner.host}` : undefined }),
  });
  try {
    const record = await cache.readRecord(name);
    if (!options.force && record && sameFiles(record, manifest) && (await exists(cache.modelDir(name)))) {
      await cache.touch(name);
      const path = cache.modelDir(name);
      emit({ type: "cached", name, path, totalBytes });
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

    if (!record && !options.force && (await exists(cache.modelDir(name)))) {
      throw new XimError(
        "XIM_PULL_EXISTS",
        `${cache.modelDir(name)} already exists and was not placed by xim pull; it is left alone`,
        { hint: "pull under another name (--name), remove that folder, or replace it with --force" },
      );
    }
    const staging = cache.stagingDir(name);
    const resumedBytes = await prepareStaging(
      [join(cache.root, ".xim"), dirname(staging)],
      staging,
      manifest,
    );
    track.bytesLeft = () => totalBytes - resumedBytes;
    const evicted = await cache.makeRoom(name, totalBytes);
    for (const m of evicted) emit({ type: "evicted", name: m.name, sizeBytes: m.sizeBytes });
    const free = await cache.freeBytes();
    if (free < totalBytes - resumedBytes) {
      throw new XimError(
        "XIM_CACHE_DISK",
        `${name} needs ${formatBytes(totalBytes - resumedBytes)} more on disk; the filesystem of ${cache.root} has ${formatBytes(free)} free`,
        { hint: "free disk space, or point XEROTIER_AGENT_MODEL_CACHE_DIR at a larger disk" },
      );
    }

    emit({ type: "start", name, totalBytes, resumedBytes });
    const progress = new Progress(name, totalBytes, emit, now, options.progressIntervalMs ?? 250);
    track.bytesLeft = () => progress.bytesLeft;
    let downloadedBytes = 0;
    for (const file of manifest.files) {
      downloadedBytes += await downloadFile({
        source: options.source,
        file,
        staging,
        progress,
        signal: options.signal,
        retry: retryOptions(name),
      });
      emit({
        type: "verified",
        name,
        file: file.path,
        check: file.sha256 ? "sha256" : file.gitSha1 ? "git-sha1" : "size",
      });
    }

    await finishStaging(staging);
    const path = await cache.place(name, staging);
    const at = new Date(now()).toISOString();
    const newRecord: CacheRecord = {
      name,
      source: options.source.description,
      revision: manifest.revision,
      files: manifest.files,
      sizeBytes: totalBytes,
      pulledAt: at,
      lastUsedAt: at,
    };
    await cache.writeRecord(newRecord);
    emit({ type: "done", name, path, totalBytes, downloadedBytes, seconds: (now() - started) / 1000 });
    return {
      name,
      path,
      revision: manifest.revision,
      sizeBytes: totalBytes,
      downloadedBytes,
      alreadyCached: false,
      evicted: evicted.map((m) => m.name),
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

/** Download one file into staging, resuming from what is there; returns the bytes fetched. */
async function downloadFile(args: DownloadArgs): Promise<number> {
  const { file, staging, progress } = args;
  const path = join(staging, file.path);
  let hasher: FileHasher | undefined;
  let fetched = 0;
  let mismatches = 0;
  await withRetry(async (attempt) => {
    let onDisk = await stagedSize(staging, file.path);
    if (onDisk > file.size) {
      await removeStaged(staging, file.path);
      onDisk = 0;
    }
    if (!hasher || hasher.bytes !== onDisk) {
      hasher = new FileHasher(file);
      await hasher.updateFromFile(path, onDisk);
    }
    progress.update(file.path, onDisk);
    if (onDisk < file.size) {
      const got = await args.source.fetchFile(file, onDisk, args.signal);
      if (got.start !== onDisk) {
        // The far end cannot resume: start the file over.
        onDisk = 0;
        hasher = new FileHasher(file);
      }
      const handle = await openStagedFile(staging, file.path, onDisk > 0);
      try {
        for await (const chunk of got.body) {
          if (hasher.bytes + chunk.byteLength > file.size) {
            throw new PullError(
              "XIM_PULL_CHECKSUM",
              `${safeText(file.path)}: the source sent more than the ${file.size} bytes the manifest lists`,
              { retryable: mismatches++ === 0, countAttempt: true },
            );
          }
          await handle.write(chunk);
          hasher.update(chunk);
          fetched += chunk.byteLength;
          attempt.progressed();
          progress.update(file.path, hasher.bytes);
        }
      } catch (err) {
        if (err instanceof PullError && err.code === "XIM_PULL_CHECKSUM") {
          await handle.close();
          await removeStaged(staging, file.path);
          hasher = undefined;
          throw err;
        }
        throw err;
      } finally {
        await handle.close().catch(() => {});
      }
    }
    if (hasher.bytes < file.size) {
      throw new PullError(
        "XIM_PULL_NETWORK",
        `${safeText(file.path)}: the transfer ended at ${hasher.bytes} of ${file.size} bytes`,
        { retryable: true },
      );
    }
    const check = hasher.check();
    if (!check.ok) {
      await removeStaged(staging, file.path);
      hasher = undefined;
      const first = mismatches++ === 0;
      throw new PullError(
        "XIM_PULL_CHECKSUM",
        `${safeText(file.path)}: ${check.kind} mismatch: expected ${check.expected}, got ${check.actual}; the file was discarded`,
        {
          retryable: first,
          countAttempt: true,
          hint: first
            ? undefined
            : "the source serves different bytes than its manifest lists: fix the source or its manifest",
        },
      );
    }
  }, args.retry);
  progress.fileDone(file.path, file.size);
  return fetched;
}
