/**
 * Runs `xim` from source as a real child process for the attack tests of
 * bounded reads, model dimensions, secrets on argv and the engine's port:
 * stdout/stderr captured, a wall-clock limit, and an address-space cap
 * (`ulimit -v`) so an unbounded read fails the test instead of exhausting
 * the shared machine's memory.
 */
import { spawn } from "node:child_process";
import { fileURLToPath } from "node:url";

export const MAIN = fileURLToPath(new URL("../../main.ts", import.meta.url));

export interface ChildResult {
  code: number | null;
  signal: NodeJS.Signals | null;
  stdout: string;
  stderr: string;
  /** The wall-clock limit killed it. */
  timedOut: boolean;
}

export interface ChildOptions {
  env: Record<string, string>;
  cwd?: string;
  /** Kill after this long; generous, because CI runs on 2 busy cores. */
  timeoutMs?: number;
  /** Address-space cap in KiB (ulimit -v); 2 GiB leaves Node room to start. */
  memoryKiB?: number;
}

/** `xim ...argv` as a child of this test, under a memory cap and a time limit. */
export function runXim(argv: string[], options: ChildOptions): Promise<ChildResult> {
  const cap = options.memoryKiB ?? 2_000_000;
  const child = spawn(
    "/bin/sh",
    ["-c", `ulimit -v ${cap}; exec "$0" "$@"`, process.execPath, MAIN, ...argv],
    { env: options.env, cwd: options.cwd, stdio: ["ignore", "pipe", "pipe"] },
  );
  let stdout = "";
  let stderr = "";
  child.stdout.on("data", (b: Buffer) => (stdout += b.toString()));
  child.stderr.on("data", (b: Buffer) => (stderr += b.toString()));
  let timedOut = false;
  const timer = setTimeout(() => {
    timedOut = true;
    child.kill("SIGKILL");
  }, options.timeoutMs ?? 60_000);
  return new Promise((resolve) => {
    child.once("close", (code, signal) => {
      clearTimeout(timer);
      resolve({ code, signal, stdout, stderr, timedOut });
    });
  });
}
