/**
 * @module Running one external tool (nvidia-smi, lscpu, docker info, vLLM's
 * Python ...) for a probe or a doctor check: look it up on the PATH of the
 * environment given (tests put their fixture executables first on it), run
 * it in its own process group, and describe every outcome as data so that no
 * tool can crash or hang its caller:
 * - "missing": not on PATH, or not an executable file;
 * - "timeout": no exit within the time allowed, or the caller's signal
 *   aborted the run; the whole process group is killed (a launcher script's
 *   Python child must not outlive it);
 * - "failed": a non-zero exit, death by a signal, output past the cap (the
 *   group is killed: a truncated answer is not parsed as a whole one) or a
 *   spawn error; stdout and stderr as far as read;
 * - "ok": exit 0 with stdout and stderr.
 * This is the one runner of the code base: hardware detection, the planner's
 * probes and `xim doctor` all use it.
 */
import { type ChildProcess, spawn } from "node:child_process";
import { constants } from "node:fs";
import { access, stat } from "node:fs/promises";
import { delimiter, isAbsolute, join } from "node:path";
import { formatBytes } from "../core/bytes-text.ts";
import { formatSeconds } from "../core/time-text.ts";

export type Env = Record<string, string | undefined>;

/** Captured bytes per stream when the caller names no cap: the largest tool answer read (nvidia-smi -q on 8 GPUs) is ~100 KiB. */
export const DEFAULT_TOOL_OUTPUT_BYTES = 4 * 1024 * 1024;

export interface ToolOptions {
  env: Env;
  timeoutMs: number;
  /** Abandons the run (the doctor's overall deadline): the group is killed and the result is "timeout". */
  signal?: AbortSignal;
  /** Cap on captured bytes per stream (DEFAULT_TOOL_OUTPUT_BYTES). */
  maxBytes?: number;
}

export type ToolResult =
  | { kind: "ok"; stdout: string; stderr: string }
  | { kind: "missing"; tool: string; reason: string }
  | { kind: "timeout"; tool: string; timeoutMs: number; reason: string }
  | {
      kind: "failed";
      tool: string;
      /** Null when it did not exit by itself (a signal, a spawn error, the output cap). */
      exitCode: number | null;
      signal: string | null;
      stdout: string;
      stderr: string;
      /** One line for a message: "exit 3", "killed by SIGSEGV", "printed more than 4.2 MB on stdout". */
      reason: string;
    };

/** The executable file `tool` resolves to on `env.PATH` (a path is taken as given), or null. */
export async function which(tool: string, env: Env): Promise<string | null> {
  if (tool.includes("/")) return (await isExecutableFile(tool)) ? tool : null;
  for (const dir of (env.PATH ?? "").split(delimiter)) {
    // An empty or relative PATH entry would resolve against our cwd, which is not what the user's shell does.
    if (!dir || !isAbsolute(dir)) continue;
    const candidate = join(dir, tool);
    if (await isExecutableFile(candidate)) return candidate;
  }
  return null;
}

async function isExecutableFile(path: string): Promise<boolean> {
  try {
    await access(path, constants.X_OK);
    return (await stat(path)).isFile();
  } catch {
    return false;
  }
}

/** The first non-empty line of a tool's output, trimmed, for one-line evidence. */
export function firstLine(text: string): string {
  return (
    text
      .split("\n")
      .map((l) => l.trim())
      .find((l) => l.length > 0) ?? ""
  );
}

/** Run `tool` (a name looked up on `options.env.PATH`, or a path); never throws. */
export async function runTool(tool: string, args: string[], options: ToolOptions): Promise<ToolResult> {
  const path = await which(tool, options.env);
  if (!path) return { kind: "missing", tool, reason: `${tool} not found on PATH or not executable` };
  if (options.signal?.aborted)
    return { kind: "timeout", tool, timeoutMs: options.timeoutMs, reason: stoppedReason(tool) };
  return new Promise((resolve) => watchTool(tool, spawnTool(path, args, options), options, resolve));
}

function stoppedReason(tool: string): string {
  return `${tool} was stopped at the caller's deadline`;
}

/** Spawned as its own process group leader, so a kill reaches its children too. */
function spawnTool(path: string, args: string[], options: ToolOptions): ChildProcess | Error {
  try {
    return spawn(path, args, {
      env: options.env as NodeJS.ProcessEnv,
      stdio: ["ignore", "pipe", "pipe"],
      detached: true,
    });
  } catch (err) {
    return err as Error;
  }
}

function killGroup(child: ChildProcess): void {
  if (child.pid === undefined || child.exitCode !== null || child.signalCode !== null) return;
  try {
    process.kill(-child.pid, "SIGKILL");
  } catch {
    // the group is already gone
  }
}

type Stopped =
  | { kind: "exit"; code: number | null; signal: string | null }
  | { kind: "missing"; reason: string }
  | { kind: "timeout"; reason: string }
  | { kind: "failed"; reason: string };

/** Collect the child's output up to the cap and settle once, on exit, timeout, abort or the cap. */
function watchTool(
  tool: string,
  child: ChildProcess | Error,
  options: ToolOptions,
  resolve: (r: ToolResult) => void,
): void {
  if (child instanceof Error) {
    resolve(failed(tool, null, null, "", "", `${tool} could not start: ${child.message}`));
    return;
  }
  const maxBytes = options.maxBytes ?? DEFAULT_TOOL_OUTPUT_BYTES;
  const stdout = new CappedText(maxBytes);
  const stderr = new CappedText(maxBytes);
  let settled = false;
  const settle = (how: Stopped) => {
    if (settled) return;
    settled = true;
    clearTimeout(timer);
    options.signal?.removeEventListener("abort", onAbort);
    if (how.kind !== "exit") killGroup(child);
    resolve(resultOf(tool, options.timeoutMs, how, stdout.text(), stderr.text()));
  };
  const onAbort = () => settle({ kind: "timeout", reason: stoppedReason(tool) });
  const timer = setTimeout(
    () =>
      settle({
        kind: "timeout",
        reason: `${tool} did not answer within ${formatSeconds(options.timeoutMs)}`,
      }),
    options.timeoutMs,
  );
  options.signal?.addEventListener("abort", onAbort, { once: true });
  const capped = (name: string) => () =>
    settle({ kind: "failed", reason: `printed more than ${formatBytes(maxBytes)} on ${name}` });
  child.stdout?.on("data", (b: Buffer) => stdout.add(b, capped("stdout")));
  child.stderr?.on("data", (b: Buffer) => stderr.add(b, capped("stderr")));
  child.on("error", (err: NodeJS.ErrnoException) => {
    // Removed or made non-executable between the PATH lookup and the start.
    const gone = err.code === "ENOENT" || err.code === "EACCES";
    settle({ kind: gone ? "missing" : "failed", reason: `${tool} could not start: ${err.message}` });
  });
  child.on("close", (code, signal) => settle({ kind: "exit", code, signal }));
}

function resultOf(tool: string, timeoutMs: number, how: Stopped, stdout: string, stderr: string): ToolResult {
  if (how.kind === "missing") return { kind: "missing", tool, reason: how.reason };
  if (how.kind === "timeout") return { kind: "timeout", tool, timeoutMs, reason: how.reason };
  if (how.kind === "failed") return failed(tool, null, null, stdout, stderr, how.reason);
  if (how.code === 0) return { kind: "ok", stdout, stderr };
  const reason = how.code !== null ? `exit ${how.code}` : `killed by ${how.signal}`;
  return failed(tool, how.code, how.signal, stdout, stderr, reason);
}

function failed(
  tool: string,
  exitCode: number | null,
  signal: string | null,
  stdout: string,
  stderr: string,
  reason: string,
): ToolResult {
  return { kind: "failed", tool, exitCode, signal, stdout, stderr, reason };
}

/** A stream's text, keeping at most `maxBytes`; `onOver` fires once the stream passes the cap. */
class CappedText {
  readonly #chunks: Buffer[] = [];
  #bytes = 0;
  readonly #maxBytes: number;
  constructor(maxBytes: number) {
    this.#maxBytes = maxBytes;
  }
  add(chunk: Buffer, onOver: () => void): void {
    const room = this.#maxBytes - this.#bytes;
    if (room > 0) this.#chunks.push(chunk.length <= room ? chunk : chunk.subarray(0, room));
    this.#bytes += chunk.length;
    if (this.#bytes > this.#maxBytes) onOver();
  }
  text(): string {
    return Buffer.concat(this.#chunks).toString("utf8");
  }
}
