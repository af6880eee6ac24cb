/**
 * Test harness for real `xim` processes: run a command to completion, or
 * start a long-running one and read its output, with a timeout on every
 * wait. Children run the same Node as the tests (process.execPath) on
 * main.ts, with HOME and the XDG folders inside a temporary folder.
 */
import { type ChildProcess, spawn } from "node:child_process";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";

export const REPO = resolve(dirname(fileURLToPath(import.meta.url)), "..", "..");
export const MAIN = join(REPO, "main.ts");

export type Env = Record<string, string | undefined>;

export function baseEnv(home: string, extra: Env = {}): Env {
  return {
    PATH: process.env.PATH,
    HOME: home,
    XDG_CONFIG_HOME: join(home, ".config"),
    XDG_STATE_HOME: join(home, ".local", "state"),
    XDG_CACHE_HOME: join(home, ".cache"),
    XEROTIER_AGENT_LOG_LEVEL: "info",
    NO_COLOR: "1",
    // Never the real /proc/sys: `xim run` raises socket buffer limits it finds low (here: none readable).
    XIM_PROC_ROOT: join(home, "proc"),
    // npm test's compile cache (package.json): each child then compiles main.ts's TypeScript once
    // per change instead of at every start, the largest cost of a start on a loaded machine.
    NODE_COMPILE_CACHE: process.env.NODE_COMPILE_CACHE,
    ...extra,
  };
}

export interface Finished {
  code: number | null;
  signal: NodeJS.Signals | null;
  stdout: string;
  stderr: string;
}

export class XimProcess {
  readonly child: ChildProcess;
  stdout = "";
  stderr = "";
  readonly exited: Promise<Finished>;

  constructor(args: string[], env: Env) {
    this.child = spawn(process.execPath, [MAIN, ...args], {
      env,
      cwd: REPO,
      stdio: ["ignore", "pipe", "pipe"],
    });
    this.child.stdout?.on("data", (d: Buffer) => {
      this.stdout += d.toString();
    });
    this.child.stderr?.on("data", (d: Buffer) => {
      this.stderr += d.toString();
    });
    this.exited = new Promise((resolve) => {
      this.child.on("exit", (code, signal) =>
        resolve({ code, signal, stdout: this.stdout, stderr: this.stderr }),
      );
    });
  }

  get pid(): number {
    return this.child.pid ?? -1;
  }

  signal(sig: NodeJS.Signals): void {
    if (this.child.exitCode === null && this.child.signalCode === null) this.child.kill(sig);
  }

  /** Resolves with the first stdout line matching; rejects on exit or timeout. */
  async line(match: (line: string) => boolean, timeoutMs: number): Promise<string> {
    return waitFor(() => this.stdout.split("\n").find((l) => l.trim() && match(l)), {
      timeoutMs,
      what: `a matching output line (stderr so far: ${this.stderr.slice(-2000)})`,
      stopIf: () => this.child.exitCode !== null,
    });
  }

  /** Stop: SIGTERM, then SIGKILL after graceMs. */
  async stop(graceMs = 5000): Promise<Finished> {
    if (this.child.exitCode !== null || this.child.signalCode !== null) return this.exited;
    this.signal("SIGCONT");
    this.signal("SIGTERM");
    const timer = setTimeout(() => this.signal("SIGKILL"), graceMs);
    const done = await this.exited;
    clearTimeout(timer);
    return done;
  }
}

/** Run `xim args...` to completion (killed after timeoutMs). */
export async function xim(args: string[], env: Env, timeoutMs = 30_000): Promise<Finished> {
  const p = new XimProcess(args, env);
  const timer = setTimeout(() => p.signal("SIGKILL"), timeoutMs);
  const done = await p.exited;
  clearTimeout(timer);
  return done;
}

export interface WaitOptions {
  timeoutMs: number;
  intervalMs?: number;
  what: string;
  stopIf?: () => boolean;
}

/** Poll until fn returns a value other than undefined/false/null. */
export async function waitFor<T>(
  fn: () => T | undefined | null | false | Promise<T | undefined | null | false>,
  o: WaitOptions,
): Promise<T> {
  const deadline = Date.now() + o.timeoutMs;
  for (;;) {
    const value = await fn();
    if (value !== undefined && value !== null && value !== false) return value as T;
    if (o.stopIf?.()) throw new Error(`gave up waiting for ${o.what}: the process exited`);
    if (Date.now() > deadline) throw new Error(`timed out after ${o.timeoutMs} ms waiting for ${o.what}`);
    await new Promise((r) => setTimeout(r, o.intervalMs ?? 50));
  }
}
