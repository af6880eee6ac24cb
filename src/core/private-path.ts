/**
 * @module Private state on disk checked the way ssh checks `~/.ssh`: the
 * node's config folder holds its CURVE secret key, so xim writes there and
 * reads from there only when the folder is not a symbolic link, is owned by
 * the user xim runs as and has no group or other permission (0700), and
 * each state file in it is a regular file (not a symlink) owned by that
 * user with mode 0600. Anything else means another local user could have
 * swapped in a file, or could read the key: xim refuses, naming the path,
 * what is wrong, and the exact command that fixes it. Files are checked
 * with lstat (no symlink followed); a folder that passes keeps its entries
 * from being replaced by anyone else, so the check holds for the read.
 */
import type { Stats } from "node:fs";
import { lstat } from "node:fs/promises";
import { ExitCode, XimError } from "./errors.ts";

export const PRIVATE_FILE_MODE = 0o600;
export const PRIVATE_DIR_MODE = 0o700;

export type PrivateKind = "folder" | "file";

/** What is wrong with a path meant to hold private state, and the command that fixes it. */
export interface PrivatePathProblem {
  problem: string;
  fix: string;
}

/** A mode as people write it: 0755. */
export function octal(mode: number): string {
  return `0${(mode & 0o777).toString(8).padStart(3, "0")}`;
}

/** Single-quote a path for a shell command line when it needs it. */
export function shellQuote(s: string): string {
  return /^[A-Za-z0-9_./:@%+=,-]+$/.test(s) ? s : `'${s.replaceAll("'", `'\\''`)}'`;
}

function currentUid(): number | undefined {
  return process.getuid?.();
}

function symlinkProblem(q: string, kind: PrivateKind): PrivatePathProblem {
  return {
    problem: "is a symbolic link (whoever controls its target controls xim's identity)",
    fix:
      kind === "folder"
        ? `rm ${q} && mkdir -m 700 ${q} (then enroll again), or point XEROTIER_AGENT_CONFIG_DIR at the real folder`
        : `rm ${q}, then enroll again: xim enroll --join-key xjk_... --force`,
  };
}

/** Group or other bits set: readable (or worse, writable) by other users. */
function modeProblem(q: string, actual: number, want: string): PrivatePathProblem | null {
  if ((actual & 0o077) === 0) return null;
  const writable = (actual & 0o022) !== 0;
  return {
    problem: `has mode ${octal(actual)}: other users may ${writable ? "write to" : "read"} it (want 0${want})`,
    fix: writable
      ? `check that nobody else changed what it holds, then: chmod ${want} ${q}`
      : `chmod ${want} ${q}`,
  };
}

/** Why `info` (an lstat of `path`) may not hold private state; null when it may. */
export function privatePathProblem(
  path: string,
  info: Stats,
  kind: PrivateKind,
  uid: number | undefined = currentUid(),
): PrivatePathProblem | null {
  const q = shellQuote(path);
  const mode = kind === "folder" ? "700" : "600";
  if (info.isSymbolicLink()) return symlinkProblem(q, kind);
  if (kind === "folder" ? !info.isDirectory() : !info.isFile()) {
    return {
      problem: `is not a ${kind === "folder" ? "folder" : "regular file"}`,
      fix: `mv ${q} ${shellQuote(`${path}.moved`)}, then enroll again`,
    };
  }
  if (uid !== undefined && info.uid !== uid) {
    return {
      problem: `is owned by uid ${info.uid}, not by uid ${uid} that xim runs as (that user could read the secret key or swap the files)`,
      fix: `check what it holds, then: sudo chown -R ${uid} ${q} && chmod ${mode} ${q}; or remove it and enroll again`,
    };
  }
  return modeProblem(q, info.mode, mode);
}

/** The error for a problem: the path, what is wrong, and the fix as the hint. Exit 78 (configuration). */
export function unsafePathError(path: string, what: string, p: PrivatePathProblem): XimError {
  return new XimError("XIM_STATE_UNSAFE", `${what} ${path} ${p.problem}; refusing to use it`, {
    hint: `Fix: ${p.fix}`,
    exitCode: ExitCode.config,
  });
}

/**
 * Check a private folder or file without following a symlink. Returns false
 * when it does not exist; throws XIM_STATE_UNSAFE when it exists but is not
 * private.
 */
export async function checkPrivatePath(path: string, kind: PrivateKind, what: string): Promise<boolean> {
  let info: Stats;
  try {
    info = await lstat(path);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === "ENOENT") return false;
    throw new XimError("XIM_STATE_UNREADABLE", `cannot inspect ${what} ${path}: ${(err as Error).message}`, {
      cause: err,
    });
  }
  const problem = privatePathProblem(path, info, kind);
  if (problem) throw unsafePathError(path, what, problem);
  return true;
}
