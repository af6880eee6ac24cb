/**
 * @module What a pull says when the disk refuses a write: a full disk
 * (ENOSPC), a used-up quota (EDQUOT), a read-only filesystem (EROFS) or a
 * folder this user may not write (EACCES, EPERM) is the operator's to fix,
 * not a bug, so it becomes an XimError naming the cache folder, the disk's
 * free space, the bytes still to download and the fix. The free-space
 * check before a download cannot rule these out: another process may fill
 * the disk meanwhile, and a quota is not what statfs reports.
 */
import { constants } from "node:fs";
import { access, statfs } from "node:fs/promises";
import { dirname } from "node:path";
import { formatBytes } from "../core/bytes-text.ts";
import { XimError } from "../core/errors.ts";

const CACHE_DIR_VARIABLE = "XEROTIER_AGENT_MODEL_CACHE_DIR";

/** Free bytes on the filesystem of `path`, or of its nearest existing parent; undefined when unknown. */
async function freeBytesNear(path: string): Promise<number | undefined> {
  for (let dir = path; ; dir = dirname(dir)) {
    try {
      const s = await statfs(dir);
      return Number(s.bavail) * Number(s.bsize);
    } catch {
      if (dirname(dir) === dir) return undefined;
    }
  }
}

/**
 * Node's recursive mkdir reports ENOENT when the first folder it must
 * create cannot be (a read-only filesystem, a folder without write
 * permission): ask the nearest existing folder why.
 */
async function realMkdirCode(path: string): Promise<string | undefined> {
  for (let dir = dirname(path); ; dir = dirname(dir)) {
    try {
      await access(dir, constants.F_OK);
    } catch {
      if (dirname(dir) === dir) return undefined;
      continue;
    }
    try {
      await access(dir, constants.W_OK);
      return undefined;
    } catch (err) {
      return (err as NodeJS.ErrnoException).code;
    }
  }
}

export interface DiskErrorContext {
  /** The model cache folder. */
  cacheDir: string;
  /** The model being pulled. */
  name?: string;
  /** Bytes still to download when the write failed, when known. */
  bytesLeft?: number;
}

/**
 * The operator-facing error for a filesystem failure during a pull, or
 * undefined when `err` is not one (it is then rethrown as it is).
 */
export async function diskError(err: unknown, context: DiskErrorContext): Promise<XimError | undefined> {
  if (err instanceof XimError) return undefined;
  const errno = err as NodeJS.ErrnoException | undefined;
  let code = errno?.code;
  if (code === "ENOENT" && errno?.syscall === "mkdir" && errno.path) code = await realMkdirCode(errno.path);
  const at = (err as NodeJS.ErrnoException | undefined)?.path ?? context.cacheDir;
  const what = context.name ? `${context.name} into ${context.cacheDir}` : `into ${context.cacheDir}`;
  const free = await freeBytesNear(context.cacheDir);
  const numbers = `${free === undefined ? "free space unknown" : `${formatBytes(free)} free`}${
    context.bytesLeft === undefined ? "" : `, ${formatBytes(context.bytesLeft)} still to download`
  }`;
  const resumes = "the bytes already downloaded are kept and the next pull resumes from them";
  switch (code) {
    case "ENOSPC":
      return new XimError(
        "XIM_CACHE_DISK",
        `cannot pull ${what}: the disk is full (ENOSPC writing ${at}); ${numbers}`,
        { hint: `free disk space, or point ${CACHE_DIR_VARIABLE} at a larger disk; ${resumes}`, cause: err },
      );
    case "EDQUOT":
      return new XimError(
        "XIM_CACHE_DISK",
        `cannot pull ${what}: this user's disk quota is used up (EDQUOT writing ${at}); ${numbers}`,
        {
          hint: `free space under the quota or have it raised, or point ${CACHE_DIR_VARIABLE} at another disk; ${resumes}`,
          cause: err,
        },
      );
    case "EROFS":
      return new XimError(
        "XIM_CACHE_NOT_WRITABLE",
        `cannot pull ${what}: the filesystem is read-only (EROFS writing ${at})`,
        { hint: `point ${CACHE_DIR_VARIABLE} at a folder on a writable filesystem`, cause: err },
      );
    case "EACCES":
    case "EPERM": {
      const uid = process.getuid?.();
      return new XimError(
        "XIM_CACHE_NOT_WRITABLE",
        `cannot pull ${what}: permission denied (${code} writing ${at})`,
        {
          hint: `give the user running xim${uid === undefined ? "" : ` (uid ${uid})`} write access to ${context.cacheDir}, or point ${CACHE_DIR_VARIABLE} at a folder it owns`,
          cause: err,
        },
      );
    }
    default:
      return undefined;
  }
}
