/**
 * @module What a command may touch of the outside world: its output
 * streams, environment and working folder. Commands never use
 * process.stdout or process.exit directly, so tests capture everything.
 */

export interface Io {
  stdout: (text: string) => void;
  stderr: (text: string) => void;
  env: Record<string, string | undefined>;
  cwd: string;
  /** Whether stdout is a terminal (tables and colour) or a pipe (plain output). */
  stdoutIsTty: boolean;
  /** The terminal's width when stdout is one; help text wraps to it (80 otherwise). */
  columns?: number;
}

/**
 * Output through a closed pipe (`xim config | head`) is not an error worth a
 * stack trace: stop writing quietly, as Unix tools do.
 */
function quietOnBrokenPipe(stream: NodeJS.WriteStream): void {
  stream.on("error", (err: NodeJS.ErrnoException) => {
    if (err.code === "EPIPE") process.exit(process.exitCode ?? 0);
    throw err;
  });
}

export function processIo(): Io {
  quietOnBrokenPipe(process.stdout);
  quietOnBrokenPipe(process.stderr);
  return {
    stdout: (text) => process.stdout.write(text),
    stderr: (text) => process.stderr.write(text),
    env: process.env,
    cwd: process.cwd(),
    stdoutIsTty: process.stdout.isTTY === true,
    columns: process.stdout.isTTY ? process.stdout.columns : undefined,
  };
}

/** An Io that records output, for tests and for commands run in-process. */
export function recordingIo(env: Record<string, string | undefined> = {}, cwd = process.cwd()) {
  const out: string[] = [];
  const err: string[] = [];
  const io: Io = {
    stdout: (t) => out.push(t),
    stderr: (t) => err.push(t),
    env,
    cwd,
    stdoutIsTty: false,
  };
  return { io, stdout: () => out.join(""), stderr: () => err.join("") };
}
