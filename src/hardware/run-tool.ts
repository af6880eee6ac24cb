/**
 * @module Running one probe command: look it up on the given PATH, run it
 * with a timeout, and describe every outcome as data (missing, timed out,
 * failed with its output, or its stdout) so no probe can crash detection.
 */
import { execFile } from "node:child_process";
import { access, constants } from "node:fs/promises";
import { delimiter, isAbsolute, join } from "node:path";

export type Env = Record<string, string | undefined>;

export type ToolResult =
  | { kind: "ok"; stdout: string; stderr: string }
  | { kind: "missing"; tool: string }
  | { kind: "timeout"; tool: string; timeoutMs: number }
  | { kind: "failed"; tool: string; exitCode: number | null; signal: string | null; output: string };

/** The executable `tool` resolves to on `env.PATH`, or null. */
export async function which(tool: string, env: Env): Promise<string | null> {
  if (isAbsolute(tool)) return (await isExecutable(tool)) ? tool : null;
  for (const dir of (env.PATH ?? "").split(delimiter)) {
    if (!dir) continue;
    const candidate = join(dir, tool);
    if (await isExecutable(candidate)) return candidate;
  }
  return null;
}

async function isExecutable(path: string): Promise<boolean> {
  try {
    await access(path, constants.X_OK);
    return true;
  } catch {
    return false;
  }
}

export async function runTool(
  tool: string,
  args: string[],
  env: Env,
  timeoutMs: number,
): Promise<ToolResult> {
  const path = await which(tool, env);
  if (!path) return { kind: "missing", tool };
  return new Promise((resolve) => {
    execFile(
      path,
      args,
      {
        env: env as NodeJS.ProcessEnv,
        timeout: timeoutMs,
        killSignal: "SIGKILL",
        maxBuffer: 16 * 1024 * 1024,
      },
      (err, stdout, stderr) => {
        if (!err) {
          resolve({ kind: "ok", stdout, stderr });
          return;
        }
        const e = err as NodeJS.ErrnoException & { killed?: boolean; signal?: string | null; code?: unknown };
        if (e.killed && e.signal === "SIGKILL") {
          resolve({ kind: "timeout", tool, timeoutMs });
          return;
        }
        if (e.code === "ENOENT" || e.code === "EACCES") {
          resolve({ kind: "missing", tool });
          return;
        }
        resolve({
          kind: "failed",
          tool,
          exitCode: typeof e.code === "number" ? e.code : null,
          signal: e.signal ?? null,
          output: `${stdout}${stderr}`.trim(),
        });
      },
    );
  });
}
