/**
 * @module The staging folder of a pull (`<cache>/.xim/staging/<model>/`):
 * where files are downloaded, and resumed from, before the model is placed.
 * Every write and removal stays inside it:
 * - the staging folder and the folders above it inside the cache must be
 *   real folders owned by this user; a symlink there is refused, never
 *   followed, and nothing is removed through it;
 * - inside it, a file is opened with O_NOFOLLOW after every folder on its
 *   path was checked to be a real folder (a symlink or file in the way is
 *   removed: the staging folder holds only what a pull wrote, so anything
 *   else in it is debris to clear, not data to keep);
 * - the bookkeeping file a resumed pull reads back is size-capped and its
 *   file names pass the same check as a source's (manifest.ts), so it cannot
 *   name anything outside either.
 */
import { constants, type Stats } from "node:fs";
import { type FileHandle, lstat, mkdir, open, rm } from "node:fs/promises";
import { join } from "node:path";
import * as v from "valibot";
import { writeFileAtomic } from "../core/atomic-file.ts";
import { FileLimits, readTextBounded } from "../core/bounded-read.ts";
import { XimError } from "../core/errors.ts";
import { type Manifest, ManifestSchema, sameFiles } from "../protocol/manifest.ts";
import { STAGING_BOOKKEEPING_FILE } from "../protocol/model-paths.ts";

async function lstatOrUndefined(path: string): Promise<Stats | undefined> {
  try {
    return await lstat(path);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === "ENOENT") return undefined;
    throw err;
  }
}

/** A cache entry that is not the real folder or file a pull made there. */
export function unsafeCacheEntry(path: string, what: string): XimError {
  return new XimError(
    "XIM_CACHE_UNSAFE",
    `${path} is ${what}; a pull writes only into real folders it created inside the model cache, and follows no symlink there`,
    { hint: `remove ${path} (nothing was written or removed through it), then pull again` },
  );
}

/** A real folder (not a symlink) owned by this user, or an XimError saying what it is instead. */
function requireRealFolder(path: string, info: Stats): void {
  if (info.isSymbolicLink()) throw unsafeCacheEntry(path, "a symlink");
  if (!info.isDirectory()) throw unsafeCacheEntry(path, "not a folder");
  const uid = process.getuid?.();
  if (uid !== undefined && info.uid !== uid) {
    throw unsafeCacheEntry(path, `owned by uid ${info.uid}, not by this user (uid ${uid})`);
  }
}

async function mkdirOne(path: string): Promise<void> {
  try {
    await mkdir(path, { mode: 0o755 });
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== "EEXIST") throw err;
  }
}

/**
 * Make every folder between `staging` and the file `relPath` a real folder,
 * replacing a symlink or file in the way (inside staging only).
 */
async function stagedFolders(staging: string, relPath: string): Promise<void> {
  const segments = relPath.split("/").slice(0, -1);
  let dir = staging;
  for (const segment of segments) {
    dir = join(dir, segment);
    const info = await lstatOrUndefined(dir);
    if (info?.isDirectory()) continue;
    // A symlink or file where a folder belongs: removing the entry removes
    // the link itself, never what it points at.
    if (info) await rm(dir, { force: true });
    await mkdirOne(dir);
    const made = await lstat(dir);
    if (!made.isDirectory()) throw unsafeCacheEntry(dir, "not a folder (it changed while the pull made it)");
  }
}

/**
 * The bytes of `relPath` already in staging. A symlink, folder or device
 * where the file belongs is removed and counts as nothing.
 */
export async function stagedSize(staging: string, relPath: string): Promise<number> {
  await stagedFolders(staging, relPath);
  const path = join(staging, relPath);
  const info = await lstatOrUndefined(path);
  if (!info) return 0;
  if (info.isFile()) return info.size;
  await rm(path, { recursive: true, force: true });
  return 0;
}

/** Open `relPath` in staging for writing (from the start, or appending), never through a symlink. */
export async function openStagedFile(staging: string, relPath: string, append: boolean): Promise<FileHandle> {
  await stagedFolders(staging, relPath);
  const path = join(staging, relPath);
  const flags =
    constants.O_WRONLY |
    constants.O_CREAT |
    constants.O_NOFOLLOW |
    (append ? constants.O_APPEND : constants.O_TRUNC);
  try {
    return await open(path, flags, 0o644);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === "ELOOP") throw unsafeCacheEntry(path, "a symlink");
    throw err;
  }
}

/** Remove `relPath` from staging (a link is removed, not followed). */
export async function removeStaged(staging: string, relPath: string): Promise<void> {
  await stagedFolders(staging, relPath);
  await rm(join(staging, relPath), { recursive: true, force: true });
}

function bookkeepingPath(staging: string): string {
  return join(staging, STAGING_BOOKKEEPING_FILE);
}

/** The manifest an interrupted pull left, when it is a regular, valid, bounded file. */
async function previousManifest(staging: string): Promise<Manifest | undefined> {
  const path = bookkeepingPath(staging);
  if (!(await lstatOrUndefined(path))?.isFile()) return undefined;
  try {
    const text = await readTextBounded(path, {
      what: "the bookkeeping of an interrupted pull",
      maxBytes: FileLimits.manifest,
    });
    const parsed = v.safeParse(ManifestSchema, JSON.parse(text));
    return parsed.success ? parsed.output : undefined;
  } catch {
    return undefined;
  }
}

/**
 * Get `staging` ready for `manifest`: keep partial files only when they
 * belong to the same file of the same manifest (an earlier, interrupted
 * pull), start over otherwise. Returns the bytes already there.
 * `parents` are the cache's folders above `staging` (not the cache folder
 * itself, which a person may well make a symlink to a larger disk): they
 * must be real folders of this user.
 */
export async function prepareStaging(
  parents: string[],
  staging: string,
  manifest: Manifest,
): Promise<number> {
  for (const dir of parents) requireRealFolder(dir, await lstat(dir));
  const info = await lstatOrUndefined(staging);
  if (info) requireRealFolder(staging, info);
  const previous = info ? await previousManifest(staging) : undefined;
  if (!previous) {
    if (info) await rm(staging, { recursive: true, force: true });
    await mkdirOne(staging);
    requireRealFolder(staging, await lstat(staging));
  } else {
    const kept = new Map(previous.files.map((f) => [f.path, f]));
    const wanted = new Set(
      manifest.files
        .filter((f) => sameFiles({ files: [f] }, { files: [kept.get(f.path) ?? { ...f, size: -1 }] }))
        .map((f) => f.path),
    );
    for (const f of previous.files) if (!wanted.has(f.path)) await removeStaged(staging, f.path);
  }
  await writeFileAtomic(bookkeepingPath(staging), JSON.stringify(manifest), { mode: 0o644 });
  let resumed = 0;
  for (const f of manifest.files) resumed += Math.min(f.size, await stagedSize(staging, f.path));
  return resumed;
}

/** Drop the bookkeeping before the staging folder becomes the model folder. */
export async function finishStaging(staging: string): Promise<void> {
  await rm(bookkeepingPath(staging), { force: true });
}
