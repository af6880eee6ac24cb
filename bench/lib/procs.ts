/**
 * @module Child processes for the benchmark: the xim executable from
 * source (Node 26 running main.ts), each with its output kept for error
 * reports and a way to wait for a JSON line it prints.
 */
import { type ChildProcess, spawn } from "node:child_process";
import { join } from "node:path";
import { V8_FLAGS } from "../../src/core/v8-flags.ts";
import { pinnedCommand } from "./pin.ts";

export const ROOT = join(import.meta.dirname, "..", "..");
export const MAIN = join(ROOT, "main.ts");

export interface Proc {
  name: string;
  child: ChildProcess;
  out: () => string;
  err: () => string;
  exited: Promise<number | null>;
  stop: (signal?: NodeJS.Signals) => Promise<number | null>;
}

/** Run `xim args` from source, with the V8 options the single executable has; on `cpus` (a taskset list) when given (bench --pin). */
export function startXim(
  name: string,
  args: string[],
  env: Record<string, string | undefined>,
  cpus?: string,
): Proc {
  const [command, argv] = pinnedCommand(process.execPath, [...V8_FLAGS, MAIN, ...args], cpus);
  const child = spawn(command, argv, {
    cwd: ROOT,
    env,
    stdio: ["ignore", "pipe", "pipe"],
  });
  let out = "";
  let err = "";
  child.stdout?.on("data", (d: Buffer) => {
    out += d.toString();
  });
  child.stderr?.on("data", (d: Buffer) => {
    err = (err + d.toString()).slice(-20_000);
  });
  const exited = new Promise<number | null>((resolve) => child.once("exit", (code) => resolve(code)));
  return {
    name,
    child,
    out: () => out,
    err: () => err,
    exited,
    stop: async (signal = "SIGTERM") => {
      if (child.exitCode !== null || child.signalCode !== null) return child.exitCode;
      child.kill(signal);
      const timer = setTimeout(() => child.kill("SIGKILL"), 15_000);
      const code = await exited;
      clearTimeout(timer);
      return code;
    },
  };
}

export async function runXim(args: string[], env: Record<string, string | undefined>): Promise<string> {
  const p = startXim(`xim ${args[0]}`, args, env);
  const code = await p.exited;
  if (code !== 0) throw new Error(`xim ${args.join(" ")} exited ${code}: ${p.err().trim()}`);
  return p.out();
}

/** Wait until `p` prints a JSON object line that `accept` likes. */
export async function jsonLine<T>(
  p: Proc,
  accept: (o: Record<string, unknown>) => boolean,
  ms = 30_000,
): Promise<T> {
  const end = Date.now() + ms;
  for (;;) {
    for (const line of p.out().split("\n")) {
      if (!line.startsWith("{")) continue;
      try {
        const o = JSON.parse(line) as Record<string, unknown>;
        if (accept(o)) return o as T;
      } catch {
        // a partial line: wait for the rest
      }
    }
    if (p.child.exitCode !== null) throw new Error(`${p.name} exited early: ${p.err().slice(-2000)}`);
    if (Date.now() > end) throw new Error(`${p.name} printed no ready line within ${ms} ms`);
    await new Promise((r) => setTimeout(r, 25));
  }
}

export async function until<T>(what: string, fn: () => Promise<T | undefined>, ms = 30_000): Promise<T> {
  const end = Date.now() + ms;
  for (;;) {
    const v = await fn();
    if (v !== undefined) return v;
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}
