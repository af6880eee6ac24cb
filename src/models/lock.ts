/**
 * @module Cross-process lock files. A lock is a file created with O_EXCL
 * holding the owner's pid and host; a lock whose owner process is gone (same
 * host, pid not running) is stale and taken over. Used so two pulls of one
 * model never write the same staging folder: the second waits, or fails at
 * once when the caller asks not to wait.
 */
import { rm, stat, writeFile } from "node:fs/promises";
import { hostname } from "node:os";
import * as v from "valibot";
import { sleep as realSleep, type Sleep } from "../core/backoff.ts";
import { FileLimits, readTextBounded } from "../core/bounded-read.ts";
import { XimError } from "../core/errors.ts";

export const LockOwnerSchema = v.object({
  pid: v.number(),
  host: v.string(),
  since: v.string(),
  what: v.string(),
});
export type LockOwner = v.InferOutput<typeof LockOwnerSchema>;

/** Whether a process recorded as (host, pid) may still be running; other hosts count as alive. */
export function ownerAlive(owner: Pick<LockOwner, "pid" | "host">): boolean {
  if (owner.host !== hostname()) return true;
  try {
    process.kill(owner.pid, 0);
    return true;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === "EPERM";
  }
}

async function readOwner(path: string): Promise<LockOwner | undefined> {
  try {
    const text = await readTextBounded(path, { what: "a pull lock", maxBytes: FileLimits.smallState });
    const parsed = v.safeParse(LockOwnerSchema, JSON.parse(text));
    return parsed.success ? parsed.output : undefined;
  } catch {
    return undefined;
  }
}

/** A lock file nobody could read for a minute was left half-written by a crash. */
async function unreadableAndOld(path: string, now: number): Promise<boolean> {
  try {
    return now - (await stat(path)).mtimeMs > 60_000;
  } catch {
    return false;
  }
}

export interface LockOptions {
  /** What the lock protects, for the message a waiter sees. */
  what: string;
  wait: boolean;
  pollMs?: number;
  sleep?: Sleep;
  signal?: AbortSignal;
  /** Called once when the lock is held by someone else and the caller is about to wait. */
  onWait?: (owner: LockOwner | undefined) => void;
  now?: () => number;
}

export interface Lock {
  release(): Promise<void>;
}

/** Create the lock file naming this process; false when another one exists. */
async function tryCreate(path: string, me: LockOwner): Promise<boolean> {
  try {
    await writeFile(path, JSON.stringify(me), { flag: "wx", mode: 0o600 });
    return true;
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== "EEXIST") throw err;
    return false;
  }
}

/** A lock left by a crash: its owner is gone, or it cannot be read and is old. */
async function isStale(path: string, owner: LockOwner | undefined, now: number): Promise<boolean> {
  return owner ? !ownerAlive(owner) : await unreadableAndOld(path, now);
}

function lockedError(path: string, what: string, owner: LockOwner | undefined): XimError {
  const who = owner ? `process ${owner.pid} on ${owner.host} since ${owner.since}` : "another process";
  return new XimError("XIM_PULL_LOCKED", `${what} is being pulled by ${who}`, {
    hint: `wait for it to finish, or run without --no-wait to wait; a lock left by a crash is removed automatically (${path})`,
  });
}

export async function acquireLock(path: string, options: LockOptions): Promise<Lock> {
  const sleep = options.sleep ?? realSleep;
  const now = () => options.now?.() ?? Date.now();
  const me: LockOwner = {
    pid: process.pid,
    host: hostname(),
    since: new Date(now()).toISOString(),
    what: options.what,
  };
  let told = false;
  for (;;) {
    if (await tryCreate(path, me)) return { release: () => rm(path, { force: true }) };
    const owner = await readOwner(path);
    if (await isStale(path, owner, now())) {
      await rm(path, { force: true });
      continue;
    }
    if (!options.wait) throw lockedError(path, options.what, owner);
    if (!told) options.onWait?.(owner);
    told = true;
    if (options.signal?.aborted) {
      throw new XimError("XIM_ABORTED", `stopped waiting for the lock on ${options.what}`);
    }
    await sleep(options.pollMs ?? 500, options.signal);
  }
}
