/**
 * @module The `--<flag>-file PATH` / `XEROTIER_AGENT_<NAME>_FILE` form of
 * every secret setting: the secret is read from a file, so it is neither on
 * the command line (which every local user reads with `ps` for the life of
 * the process) nor in the environment. The file is read bounded (a symlink
 * to /dev/zero is refused), its content trimmed (a trailing newline is not
 * part of the key), and refused when group or others may read it: a
 * secret any local user can read is not one.
 */
import { statSync } from "node:fs";
import { FileLimits, readTextBoundedSync } from "../bounded-read.ts";
import { isXimError } from "../errors.ts";

export type SecretFileRead = { value: string } | { problem: string };

/** The variable of a secret's file form: XEROTIER_AGENT_JOIN_KEY -> XEROTIER_AGENT_JOIN_KEY_FILE. */
export function secretFileEnv(env: string): string {
  return `${env}_FILE`;
}

/** The flag of a secret's file form: join-key -> join-key-file. */
export function secretFileFlag(flag: string): string {
  return `${flag}-file`;
}

/** Read a secret from `path` (already resolved); a problem is a sentence naming the fix. */
export function readSecretFile(path: string): SecretFileRead {
  let text: string;
  try {
    text = readTextBoundedSync(path, { what: "the secret file", maxBytes: FileLimits.secretFile });
  } catch (err) {
    if (isXimError(err)) return { problem: err.message };
    const code = (err as NodeJS.ErrnoException).code;
    if (code === "ENOENT") return { problem: "the file does not exist" };
    return { problem: `the file cannot be read: ${(err as Error).message}` };
  }
  const mode = statSync(path).mode & 0o777;
  if ((mode & 0o077) !== 0) {
    return {
      problem: `the file is readable by group or others (mode ${mode.toString(8).padStart(4, "0")}); run chmod 600 ${path}`,
    };
  }
  const value = text.trim();
  if (value === "") return { problem: "the file is empty" };
  return { value };
}
