/**
 * @module Crash-safe file writes: write a temporary sibling, fsync it, rename
 * it over the target, fsync the folder. A reader sees the old file or the new
 * one, never half of either. Private state uses mode 0600 in a 0700 folder
 * (private-path.ts says when a folder counts as private).
 */
import { randomBytes } from "node:crypto";
import { chmod, mkdir, open, rename, rm, stat } from "node:fs/promises";
import { basename, dirname, join } from "node:path";
import {
  checkPrivatePath,
  PRIVATE_DIR_MODE,
  PRIVATE_FILE_MODE,
  privatePathProblem,
  unsafePathError,
} from "./private-path.ts";

export { PRIVATE_DIR_MODE, PRIVATE_FILE_MODE };

export interface PrivateDirOptions {
  /** Names the folder in errors: "the config folder". */
  what?: string;
  /**
   * For a folder holding secrets (the node's config folder): a symlink, or
   * an existing folder with any group or other permission, is refused
   * rather than tightened (it may already hold a file someone else put there).
   */
  strict?: boolean;
}

export interface AtomicWriteOptions {
  mode?: number;
}

export async function writeFileAtomic(
  path: string,
  data: string | Uint8Array,
  options: AtomicWriteOptions = {},
): Promise<void> {
  const mode = options.mode ?? PRIVATE_FILE_MODE;
  const dir = dirname(path);
  const tmp = join(dir, `.${basename(path)}.${randomBytes(6).toString("hex")}.tmp`);
  const handle = await open(tmp, "wx", mode);
  try {
    await handle.writeFile(data);
    // open() applies the umask; chmod makes the mode exact.
    await handle.chmod(mode);
    await handle.sync();
  } catch (err) {
    await handle.close();
    await rm(tmp, { force: true });
    throw err;
  }
  await handle.close();
  try {
    await rename(tmp, path);
  } catch (err) {
    await rm(tmp, { force: true });
    throw err;
  }
  await syncDir(dir);
}

/**
 * Create a private folder (0700). A folder owned by another user is refused
 * (XIM_STATE_UNSAFE, with the fix); an existing one of ours with a looser
 * mode is tightened, or with `strict` refused.
 */
export async function ensurePrivateDir(path: string, options: PrivateDirOptions = {}): Promise<void> {
  const what = options.what ?? "the folder";
  if (options.strict) {
    if (await checkPrivatePath(path, "folder", what)) return;
    await mkdir(path, { recursive: true, mode: PRIVATE_DIR_MODE });
    // Check what is there now: another process may have raced us to the name.
    await checkPrivatePath(path, "folder", what);
    return;
  }
  await mkdir(path, { recursive: true, mode: PRIVATE_DIR_MODE });
  const info = await stat(path);
  const uid = process.getuid?.();
  if (uid !== undefined && info.uid !== uid) {
    const problem = privatePathProblem(path, info, "folder", uid);
    if (problem) throw unsafePathError(path, what, problem);
  }
  if ((info.mode & 0o777) !== PRIVATE_DIR_MODE) await chmod(path, PRIVATE_DIR_MODE);
}

async function syncDir(dir: string): Promise<void> {
  const handle = await open(dir, "r");
  try {
    await handle.sync();
  } catch {
    // Some filesystems refuse fsync on a directory; the rename is still atomic.
  } finally {
    await handle.close();
  }
}
