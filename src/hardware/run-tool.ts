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
 * A long-running tool (the MoE tuner) passes `onLine` for its progress and
 * an infinite timeout; its output then keeps its tail instead of failing at
 * the cap (tool-output.ts).
 * This is the one runner of the code base: hardware detection, the planner's
 * probes and `xim doctor` all use it.
 */
import { type ChildProcess, spawn } from "node:child_process";
import { constants } from "node:fs";
import { access, stat } from "node:fs/promises";
import { delimiter, join } from "node:path";
import { formatBytes } from "../core/bytes-text.ts";
import { formatSeconds } from "../core/time-text.ts";
import { ToolOutput } from "./tool-output.ts";

export type Env = Record<string, string | undefined>;

/** Captured bytes per stream when the caller names no cap: the largest tool answer read (nvidia-smi -q on 8 GPUs) is ~100 KiB. */
export const DEFAULT_TOOL_OUTPUT_BYTES = 4 * 1024 * 1024;

export interface ToolOptions {
  env: Env;
  /** Infinity for none (a tuner that runs for hours stops by `signal` instead). */
  timeoutMs: number;
  /** Abandons the run (the doctor's overall deadline): the group is killed and the result is "timeout". */
  signal?: AbortSignal;
  /** Cap on captured bytes per stream (DEFAULT_TOOL_OUTPUT_BYTES). */
  maxBytes?: number;
  /** The tool's working folder (this process's by default). */
  cwd?: string;
  /**
   * Each complete line as it arrives, for a long-running tool's progress.
   * With it, a stream past the cap keeps its last `maxBytes` instead of
   * failing the run: progress is not an answer to parse.
   */
  onLine?: (line: string, stream: "stdout" | "stderr") => void;
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
    if (!dir) continue;
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
      cwd: options.cwd,
      stdio: ["ignore", "pipe", "pipe"],
      detached: true,
    });
  } catch (err) {
    return err as Error;
  }
}

/** Also after the tool itself exited: a child it left behind may still hold its output open. */
function killGroup(child: ChildProcess): void {
  if (child.pid === undefined) return;
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
  const output = (name: "stdout" | "stderr") => {
    const onLine = options.onLine;
    return new ToolOutput(maxBytes, onLine ? "tail" : "head", onLine && ((line) => onLine(line, name)));
  };
  const stdout = output("stdout");
  const stderr = output("stderr");
  let settled = false;
  const settle = (how: Stopped) => {
    if (settled) return;
    settled = true;
    clearTimeout(timer);
    options.signal?.removeEventListener("abort", onAbort);
    if (how.kind !== "exit") killGroup(child);
    const ended = how.kind === "exit" ? endLines(stdout, stderr) : undefined;
    resolve(resultOf(tool, options.timeoutMs, ended ?? how, stdout.text(), stderr.text()));
  };
  const onAbort = () => settle({ kind: "timeout", reason: stoppedReason(tool) });
  const timeout = () =>
    settle({ kind: "timeout", reason: `${tool} did not answer within ${formatSeconds(options.timeoutMs)}` });
  const timer = Number.isFinite(options.timeoutMs) ? setTimeout(timeout, options.timeoutMs) : undefined;
  options.signal?.addEventListener("abort", onAbort, { once: true });
  const take = (stream: ToolOutput, name: string) => (chunk: Buffer) => {
    let complete: boolean;
    try {
      complete = stream.add(chunk);
    } catch (err) {
      settle({ kind: "failed", reason: `the line handler threw on ${name}: ${(err as Error).message}` });
      return;
    }
    if (!complete)
      settle({ kind: "failed", reason: `printed more than ${formatBytes(maxBytes)} on ${name}` });
  };
  child.stdout?.on("data", take(stdout, "stdout"));
  child.stderr?.on("data", take(stderr, "stderr"));
  child.on("error", (err: NodeJS.ErrnoException) => {
    // Removed or made non-executable between the PATH lookup and the start.
    const gone = err.code === "ENOENT" || err.code === "EACCES";
    settle({ kind: gone ? "missing" : "failed", reason: `${tool} could not start: ${err.message}` });
  });
  child.on("close", (code, signal) => settle({ kind: "exit", code, signal }));
}

/** Hands the last unterminated lines over; a failure when the caller's line handler threw. */
function endLines(...streams: ToolOutput[]): Stopped | undefined {
  try {
    for (const stream of streams) stream.end();
    return undefined;
  } catch (err) {
    return { kind: "failed", reason: `the line handler threw: ${(err as Error).message}` };
  }
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
