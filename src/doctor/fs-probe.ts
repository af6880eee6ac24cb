/**
 * @module File-system facts for the permission, disk and configuration
 * checks: stat without throwing, the nearest folder that exists above a
 * path, and whether a given user could write a folder judged from its owner,
 * group and mode bits (so the answer is right for the agent's user even when
 * doctor runs as root, and tests can ask on behalf of another uid).
 */
import type { Stats } from "node:fs";
import { lstat, readdir, stat } from "node:fs/promises";
import { dirname, join, resolve } from "node:path";

export async function statOrUndefined(path: string): Promise<Stats | undefined> {
  try {
    return await stat(path);
  } catch {
    return undefined;
  }
}

export async function lstatOrUndefined(path: string): Promise<Stats | undefined> {
  try {
    return await lstat(path);
  } catch {
    return undefined;
  }
}

/** The path itself when it exists, else its closest existing ancestor. */
export async function nearestExisting(path: string): Promise<{ path: string; stats: Stats }> {
  let p = resolve(path);
  for (;;) {
    const s = await statOrUndefined(p);
    if (s) return { path: p, stats: s };
    const parent = dirname(p);
    if (parent === p) throw new Error(`no part of ${path} exists`);
    p = parent;
  }
}

/** Whether `uid` (member of `gids`) may create files in a folder with these stats. Root may always. */
export function writableBy(s: Stats, uid: number, gids: readonly number[]): boolean {
  if (uid === 0) return true;
  if (s.uid === uid) return (s.mode & 0o300) === 0o300;
  if (gids.includes(s.gid)) return (s.mode & 0o030) === 0o030;
  return (s.mode & 0o003) === 0o003;
}

// Shared with the agent's own checks of its private state.
export { octal, shellQuote } from "../core/private-path.ts";

/** Bytes under a folder; stops early when the check is abandoned. */
export async function folderUsage(dir: string, signal: AbortSignal): Promise<number> {
  let total = 0;
  const stack = [dir];
  while (stack.length > 0 && !signal.aborted) {
    const d = stack.pop() as string;
    let names: string[];
    try {
      names = await readdir(d);
    } catch {
      continue;
    }
    for (const n of names) {
      try {
        const s = await lstat(join(d, n));
        if (s.isDirectory()) stack.push(join(d, n));
        else total += s.size;
      } catch {
        // vanished meanwhile
      }
    }
  }
  return total;
}
