/**
 * @module Puts the embedded zeromq addon on disk where only this user can
 * change it, so that `process.dlopen` loads exactly the bytes the binary
 * carries. A library loaded from a place another local user can write (a
 * shared temporary folder, a folder under one, or any folder whose parent
 * another user can rename entries in) could be swapped between the check
 * and the load. So a folder is used only if its real path, and every folder
 * above it, is owned by this user or root and is not writable by others
 * (or has the sticky bit, as /tmp does, which stops others renaming our
 * entries). The file's name carries the bytes' sha256, and an existing file
 * is hashed again before it is loaded.
 */
import {
  chmodSync,
  existsSync,
  lstatSync,
  mkdirSync,
  readFileSync,
  realpathSync,
  renameSync,
  writeFileSync,
} from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { xdgCacheHome } from "../core/paths.ts";
import { sha256Hex } from "../core/sha256.ts";

/** Throws unless `path` (a real path) and every folder above it are safe to load a library from. */
export function assertTrustedPath(path: string, uid: number | undefined = process.getuid?.()): void {
  if (uid === undefined) return;
  let current = path;
  for (;;) {
    const info = lstatSync(current);
    if (!info.isDirectory()) throw new Error(`${current} is not a folder`);
    if (info.uid !== uid && info.uid !== 0) {
      throw new Error(`${current} is owned by uid ${info.uid}, not by uid ${uid} or root`);
    }
    const sticky = (info.mode & 0o1000) !== 0;
    if ((info.mode & 0o022) !== 0 && !sticky) {
      throw new Error(`${current} is writable by other users (mode ${(info.mode & 0o7777).toString(8)})`);
    }
    const parent = dirname(current);
    if (parent === current) return;
    current = parent;
  }
}

/** Makes `path` as a 0700 folder and returns its real path, or throws saying why it cannot be trusted. */
export function privateFolder(path: string, uid: number | undefined = process.getuid?.()): string {
  mkdirSync(path, { recursive: true, mode: 0o700 });
  const real = realpathSync(path);
  const info = lstatSync(real);
  if (uid !== undefined && info.uid !== uid) {
    throw new Error(`${real} is owned by uid ${info.uid}, not by uid ${uid}`);
  }
  if ((info.mode & 0o077) !== 0) chmodSync(real, 0o700);
  assertTrustedPath(real, uid);
  return real;
}

/** Where the addon may go, best first: the user's cache folder, then a per-user folder in the temp folder. */
export function candidateFolders(env: Record<string, string | undefined> = process.env): string[] {
  const uid = process.getuid?.() ?? "user";
  const folders: string[] = [];
  try {
    folders.push(join(xdgCacheHome(env), "xim", "addons"));
  } catch {
    // No home folder (a uid without a passwd entry and no HOME): the temp folder is next.
  }
  folders.push(join(tmpdir(), `xim-${uid}`, "addons"));
  return folders;
}

/** Writes (or re-verifies) the addon in `folder` and returns the file's path. */
export function extractInto(folder: string, bytes: Uint8Array, hash: string = sha256Hex(bytes)): string {
  const dir = privateFolder(folder);
  const file = join(dir, `zeromq-${hash.slice(0, 32)}.node`);
  if (existsSync(file)) {
    const info = lstatSync(file);
    if (info.isFile() && sha256Hex(readFileSync(file)) === hash) return file;
  }
  const tmp = `${file}.${process.pid}.tmp`;
  writeFileSync(tmp, bytes, { mode: 0o500 });
  renameSync(tmp, file);
  return file;
}

/**
 * Extracts the addon into the first folder that is safe and where loading
 * works (a folder on a `noexec` mount fails at load time), and returns what
 * `load` returned. The error lists why each folder was refused.
 */
export function extractAndLoad<T>(
  bytes: Uint8Array,
  load: (file: string) => T,
  folders: string[] = candidateFolders(),
): { file: string; value: T } {
  const hash = sha256Hex(bytes);
  const errors: string[] = [];
  for (const folder of folders) {
    try {
      const file = extractInto(folder, bytes, hash);
      return { file, value: load(file) };
    } catch (err) {
      errors.push(`${folder}: ${(err as Error).message}`);
    }
  }
  throw new Error(
    `cannot load the embedded zeromq addon (${errors.join("; ")}); set XDG_CACHE_HOME to a folder owned by this user that is not writable by others and not mounted noexec`,
  );
}
