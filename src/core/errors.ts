/**
 * @module The one error type every part of xim throws on purpose. A coded
 * error carries a stable `XIM_*` code, a message for a person, an optional
 * hint (the concrete next step) and the process exit code the CLI uses.
 * Anything thrown that is not an XimError is a bug and prints its stack.
 */

/** Exit codes documented in the README: scripts branch on these. */
export const ExitCode = {
  ok: 0,
  failure: 1,
  usage: 2,
  /** EX_CONFIG from sysexits.h: the configuration is invalid. */
  config: 78,
} as const;

export interface XimErrorOptions {
  hint?: string;
  cause?: unknown;
  exitCode?: number;
}

export class XimError extends Error {
  readonly code: string;
  readonly hint: string | undefined;
  readonly exitCode: number;

  constructor(code: string, message: string, options: XimErrorOptions = {}) {
    super(message, options.cause === undefined ? undefined : { cause: options.cause });
    this.name = "XimError";
    this.code = code;
    this.hint = options.hint;
    this.exitCode = options.exitCode ?? ExitCode.failure;
  }
}

/** A usage error: wrong flags or subcommand. Exit 2. */
export class UsageError extends XimError {
  constructor(message: string, hint?: string) {
    super("XIM_USAGE", message, { hint, exitCode: ExitCode.usage });
  }
}

export function isXimError(err: unknown): err is XimError {
  return err instanceof XimError;
}

/** The message of any thrown value, without assuming it is an Error. */
export function messageOf(err: unknown): string {
  if (err instanceof Error) return err.message;
  return String(err);
}
