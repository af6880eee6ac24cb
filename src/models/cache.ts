/**
 * @module The local model cache. Layout under the cache folder:
 *
 *   <name>/                    a placed model (what vLLM loads); "org/name" -> "org--name"
 *   .xim/staging/<name>/       a pull in progress; resumed by the next pull of the same model
 *   .xim/records/<name>.json   what was placed: source, revision, files, size, pulled and last used
 *   .xim/locks/<name>.lock     held while a pull of <name> runs
 *   .xim/in-use/<name>/<pid>-* held by a process serving <name> (never evicted while live)
 *
 * The cache's size limit counts every model folder. Least recently used
 * models (by their record's lastUsedAt) are evicted to make room before a
 * download starts; models in use and folders xim did not place are never
 * evicted. A pull that cannot fit fails before any byte moves, with the numbers.
 */
import { randomBytes } from "node:crypto";
import { lstat, readdir, rename, rm, statfs } from "node:fs/promises";
import { hostname } from "node:os";
import { join } from "node:path";
import * as v from "valibot";
import { ensurePrivateDir, writeFileAtomic } from "../core/atomic-file.ts";
import { FileLimits, readTextBounded } from "../core/bounded-read.ts";
import { formatBytes } from "../core/bytes-text.ts";
import type { Config } from "../core/config/schema.ts";
import { XimError } from "../core/errors.ts";
import { ManifestFileSchema } from "../protocol/manifest.ts";
import { ownerAlive } from "./lock.ts";
import { unsafeCacheEntry } from "./staging.ts";

/** XEROTIER_AGENT_MODEL_CACHE_MAX_SIZE_GB counts decimal gigabytes. */
export const GB = 1_000_000_000;

export const CacheRecordSchema = v.object({
  name: v.string(),
  source: v.string(),
  revision: v.optional(v.string()),
  files: v.array(ManifestFileSchema),
  sizeBytes: v.number(),
  pulledAt: v.string(),
  lastUsedAt: v.string(),
});
export type CacheRecord = v.InferOutput<typeof CacheRecordSchema>;

export type CacheConfig = Pick<Config, "modelCacheDir" | "modelCacheMaxSizeGb">;

/** The folder name of a model: "/" becomes "--"; anything outside [A-Za-z0-9._@-] becomes "_". */
export function modelKey(name: string): string {
  const key = name.replace(/\//g, "--").replace(/[^A-Za-z0-9._@-]/g, "_");
  if (key === "" || key.startsWith(".")) {
    throw new XimError("XIM_PULL_BAD_NAME", `'${name}' cannot name a model folder`, {
      hint: "use letters, digits, '.', '_', '-', '@' and '/', not starting with '.'",
    });
  }
  return key;
}

export class ModelCache {
  readonly root: string;
  readonly maxBytes: number;
  readonly #now: () => number;

  constructor(config: CacheConfig, now: () => number = Date.now) {
    this.root = config.modelCacheDir;
    this.maxBytes = config.modelCacheMaxSizeGb * GB;
    this.#now = now;
  }

  modelDir(name: string): string {
    return join(this.root, modelKey(name));
  }
  stagingDir(name: string): string {
    return join(this.root, ".xim", "staging", modelKey(name));
  }
  lockPath(name: string): string {
    return join(this.root, ".xim", "locks", `${modelKey(name)}.lock`);
  }
  recordPath(name: string): string {
    return join(this.root, ".xim", "records", `${modelKey(name)}.json`);
  }
  inUseDir(name: string): string {
    return join(this.root, ".xim", "in-use", modelKey(name));
  }

  async init(): Promise<void> {
    await ensurePrivateDir(this.root);
    // The cache folder itself may be a symlink to a larger disk; xim's own
    // folders inside it may not (ensurePrivateDir would chmod the target).
    for (const sub of ["", "staging", "records", "locks", "in-use", "trash"]) {
      const dir = join(this.root, ".xim", sub);
      if ((await lstat(dir).catch(() => undefined))?.isSymbolicLink())
        throw unsafeCacheEntry(dir, "a symlink");
      await ensurePrivateDir(dir);
    }
  }

  async readRecord(name: string): Promise<CacheRecord | undefined> {
    return readRecordFile(this.recordPath(name));
  }

  async writeRecord(record: CacheRecord): Promise<void> {
    await writeFileAtomic(this.recordPath(record.name), `${JSON.stringify(record, null, 2)}\n`);
  }

  /** Mark a model as just used (LRU order); a no-op for models without a record. */
  async touch(name: string): Promise<void> {
    const record = await this.readRecord(name);
    if (!record) return;
    await this.writeRecord({ ...record, lastUsedAt: new Date(this.#now()).toISOString() });
  }

  /**
   * Declare that this process serves `name`: it will not be evicted until
   * `release()` (or until this process is gone). Also marks it used.
   */
  async markInUse(name: string): Promise<{ release: () => Promise<void> }> {
    await this.init();
    const dir = this.inUseDir(name);
    await ensurePrivateDir(dir);
    const file = join(dir, `${process.pid}-${randomBytes(4).toString("hex")}`);
    const owner = { pid: process.pid, host: hostname(), since: new Date(this.#now()).toISOString() };
    await writeFileAtomic(file, JSON.stringify(owner));
    await this.touch(name);
    return { release: () => rm(file, { force: true }) };
  }

  async inUse(name: string): Promise<boolean> {
    let entries: string[];
    try {
      entries = await readdir(this.inUseDir(name));
    } catch {
      return false;
    }
    for (const entry of entries) {
      const path = join(this.inUseDir(name), entry);
      try {
        const text = await readTextBounded(path, {
          what: "a model-in-use marker",
          maxBytes: FileLimits.smallState,
        });
        const owner = JSON.parse(text) as { pid: number; host: string };
        if (ownerAlive(owner)) return true;
        await rm(path, { force: true });
      } catch {
        // a marker being written right now: count it as live
        return true;
      }
    }
    return false;
  }

  /** Every model folder in the cache, with its record when xim placed it. */
  async list(): Promise<CachedModel[]> {
    let entries: string[];
    try {
      entries = await readdir(this.root);
    } catch {
      return [];
    }
    const records = new Map<string, CacheRecord>();
    for (const file of await readdir(join(this.root, ".xim", "records")).catch(() => [] as string[])) {
      if (!file.endsWith(".json")) continue;
      const record = await readRecordFile(join(this.root, ".xim", "records", file));
      if (record) records.set(modelKey(record.name), record);
    }
    const models: CachedModel[] = [];
    for (const entry of entries.sort()) {
      if (entry.startsWith(".")) continue;
      const path = join(this.root, entry);
      const info = await lstat(path);
      if (!info.isDirectory()) continue;
      const record = records.get(entry);
      models.push({
        name: record?.name ?? entry,
        path,
        sizeBytes: record?.sizeBytes ?? (await folderBytes(path)),
        lastUsedAt: record?.lastUsedAt ?? info.mtime.toISOString(),
        pulledAt: record?.pulledAt,
        source: record?.source,
        managed: record !== undefined,
        inUse: await this.inUse(record?.name ?? entry),
      });
    }
    return models;
  }

  /**
   * Make room for `needBytes` more (the model `name` being pulled, whose
   * current copy, if any, is about to be replaced and so does not count).
   * Evicts least recently used models not in use; returns what it evicted.
   * Throws XIM_CACHE_FULL, before anything is removed, when even evicting
   * everything allowed would not fit.
   */
  async makeRoom(name: string, needBytes: number): Promise<CachedModel[]> {
    const key = modelKey(name);
    if (needBytes > this.maxBytes) {
      throw new XimError(
        "XIM_CACHE_FULL",
        `${name} needs ${formatBytes(needBytes)}, more than the whole cache limit of ${formatBytes(this.maxBytes)} (XEROTIER_AGENT_MODEL_CACHE_MAX_SIZE_GB=${this.maxBytes / GB})`,
        { hint: `raise XEROTIER_AGENT_MODEL_CACHE_MAX_SIZE_GB to at least ${Math.ceil(needBytes / GB)}` },
      );
    }
    const others = (await this.list()).filter((m) => modelKey(m.name) !== key);
    const used = others.reduce((s, m) => s + m.sizeBytes, 0);
    let over = used + needBytes - this.maxBytes;
    if (over <= 0) return [];
    const candidates = others
      .filter((m) => m.managed && !m.inUse)
      .sort((a, b) => a.lastUsedAt.localeCompare(b.lastUsedAt));
    const evictable = candidates.reduce((s, m) => s + m.sizeBytes, 0);
    if (evictable < over) {
      const pinned = others.filter((m) => m.inUse || !m.managed);
      throw new XimError(
        "XIM_CACHE_FULL",
        `${name} needs ${formatBytes(needBytes)}; the cache holds ${formatBytes(used)} of its ${formatBytes(this.maxBytes)} limit and only ${formatBytes(evictable)} can be evicted (${pinned.map((m) => `${m.name} ${m.inUse ? "in use" : "not placed by xim"}, ${formatBytes(m.sizeBytes)}`).join("; ") || "nothing else"})`,
        {
          hint: "raise XEROTIER_AGENT_MODEL_CACHE_MAX_SIZE_GB, stop serving a model, or remove a folder from the cache",
        },
      );
    }
    const evicted: CachedModel[] = [];
    for (const model of candidates) {
      if (over <= 0) break;
      // Checked again just before removal: a node may have started serving it meanwhile.
      if (await this.inUse(model.name)) continue;
      await this.remove(model.name);
      evicted.push(model);
      over -= model.sizeBytes;
    }
    if (over > 0) {
      throw new XimError(
        "XIM_CACHE_FULL",
        `${name} needs ${formatBytes(needBytes)}; models came into use while making room`,
        {
          hint: "pull again",
        },
      );
    }
    return evicted;
  }

  /** Free space on the cache's filesystem, in bytes. */
  async freeBytes(): Promise<number> {
    const s = await statfs(this.root);
    return Number(s.bavail) * Number(s.bsize);
  }

  /** Remove a model: moved aside first, so a reader never sees a half-deleted folder under its name. */
  async remove(name: string): Promise<void> {
    const trash = join(this.root, ".xim", "trash", `${modelKey(name)}.${randomBytes(4).toString("hex")}`);
    try {
      await rename(this.modelDir(name), trash);
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== "ENOENT") throw err;
    }
    await rm(this.recordPath(name), { force: true });
    await rm(trash, { recursive: true, force: true });
  }

  /**
   * Put a verified staging folder in place. With no previous copy this is a
   * single rename. A previous copy is first renamed aside, then the new one
   * renamed in: the name points at a complete model or at nothing, never at
   * a mix, and processes that already opened the old files keep reading them.
   */
  async place(name: string, staging: string): Promise<string> {
    const target = this.modelDir(name);
    const trash = join(this.root, ".xim", "trash", `${modelKey(name)}.${randomBytes(4).toString("hex")}`);
    let old = false;
    try {
      await rename(target, trash);
      old = true;
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== "ENOENT") throw err;
    }
    await rename(staging, target);
    if (old) await rm(trash, { recursive: true, force: true });
    return target;
  }
}

export interface CachedModel {
  name: string;
  path: string;
  sizeBytes: number;
  lastUsedAt: string;
  pulledAt?: string;
  source?: string;
  /** Placed by xim (has a record); only these are evicted. */
  managed: boolean;
  inUse: boolean;
}

async function readRecordFile(path: string): Promise<CacheRecord | undefined> {
  try {
    // Bounded and regular files only: a record replaced by a FIFO or a huge file is skipped, not read.
    const text = await readTextBounded(path, { what: "a model cache record", maxBytes: FileLimits.manifest });
    const parsed = v.safeParse(CacheRecordSchema, JSON.parse(text));
    return parsed.success ? parsed.output : undefined;
  } catch {
    return undefined;
  }
}

export async function folderBytes(path: string): Promise<number> {
  let total = 0;
  for (const entry of await readdir(path, { withFileTypes: true, recursive: true })) {
    if (entry.isFile()) total += (await lstat(join(entry.parentPath, entry.name))).size;
  }
  return total;
}
