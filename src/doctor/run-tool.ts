/**
 * @module Runs an external tool (nvidia-smi, docker, vllm --version ...) for a
 * check: bounded in time, killed when the check is abandoned, never throwing.
 * The tool is looked up on the PATH of the environment the doctor was given,
 * so tests put their fixture executables first on that PATH.
 */
import { spawn } from "node:child_process";

export interface ToolResult {
  /** "ok": the tool ran and exited (any code); "missing": not found or not executable; "timeout"; "error". */
  outcome: "ok" | "missing" | "timeout" | "error";
  code: number | null;
  stdout: string;
  stderr: string;
  /** A short reason for missing/timeout/error. */
  reason?: string;
}

export interface ToolOptions {
  env: Record<string, string | undefined>;
  timeoutMs: number;
  signal?: AbortSignal;
  /** Cap on captured output per stream. */
  maxBytes?: number;
}

export function runTool(command: string, args: string[], options: ToolOptions): Promise<ToolResult> {
  const maxBytes = options.maxBytes ?? 4 * 1024 * 1024;
  return new Promise((resolve) => {
    let settled = false;
    const out: Buffer[] = [];
    const err: Buffer[] = [];
    let outBytes = 0;
    let errBytes = 0;
    let child: ReturnType<typeof spawn>;
    const finish = (result: Omit<ToolResult, "stdout" | "stderr">) => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      options.signal?.removeEventListener("abort", onAbort);
      resolve({
        ...result,
        stdout: Buffer.concat(out).toString("utf8"),
        stderr: Buffer.concat(err).toString("utf8"),
      });
    };
    const kill = () => {
      try {
        child?.kill("SIGKILL");
      } catch {
        // already gone
      }
    };
    const onAbort = () => {
      kill();
      finish({ outcome: "timeout", code: null, reason: "stopped at the doctor's overall deadline" });
    };
    const timer = setTimeout(() => {
      kill();
      finish({
        outcome: "timeout",
        code: null,
        reason: `${command} did not answer within ${formatSeconds(options.timeoutMs)}`,
      });
    }, options.timeoutMs);
    if (options.signal?.aborted) {
      onAbort();
      return;
    }
    options.signal?.addEventListener("abort", onAbort, { once: true });
    try {
      child = spawn(command, args, {
        env: options.env as NodeJS.ProcessEnv,
        stdio: ["ignore", "pipe", "pipe"],
      });
    } catch (e) {
      finish({ outcome: "error", code: null, reason: (e as Error).message });
      return;
    }
    child.stdout?.on("data", (b: Buffer) => {
      if (outBytes < maxBytes) out.push(b);
      outBytes += b.length;
    });
    child.stderr?.on("data", (b: Buffer) => {
      if (errBytes < maxBytes) err.push(b);
      errBytes += b.length;
    });
    child.on("error", (e: NodeJS.ErrnoException) => {
      if (e.code === "ENOENT" || e.code === "EACCES") {
        finish({ outcome: "missing", code: null, reason: `${command} not found on PATH or not executable` });
      } else {
        finish({ outcome: "error", code: null, reason: e.message });
      }
    });
    child.on("close", (code, signal) => {
      finish({ outcome: "ok", code: code ?? (signal ? 128 : null) });
    });
  });
}

export function formatSeconds(ms: number): string {
  const s = ms / 1000;
  return `${Number.isInteger(s) ? s : s.toFixed(1)} s`;
}

/** The first non-empty line of a tool's output, for one-line evidence. */
export function firstLine(text: string): string {
  return (
    text
      .split("\n")
      .map((l) => l.trim())
      .find((l) => l.length > 0) ?? ""
  );
}
