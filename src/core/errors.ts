/**
 * @module The one error type every part of xim throws on purpose. A coded
 * error carries a stable `XIM_*` code, a message for a person, an optional
 * hint (the concrete next step) and the process exit code the CLI uses.
 * Anything thrown that is not an XimError is a bug and prints its stack.
 */

/** Every exit code of xim, documented in the README's table: scripts branch on these. */
export const ExitCode = {
  ok: 0,
  failure: 1,
  usage: 2,
  /** `xim enroll`: the node is already enrolled; nothing changed (--force replaces). */
  alreadyEnrolled: 3,
  malformedKey: 4,
  expiredKey: 5,
  usedKey: 6,
  /** The join key is unknown to the router, or was revoked. */
  unknownKey: 7,
  /** The router cannot be reached (connection refused, DNS, timeout). */
  unreachable: 8,
  /** The TLS handshake with the router failed. */
  tls: 9,
  /** The router's TLS certificate or CURVE key does not match the join key's pins. */
  fingerprint: 10,
  /** Node and router speak different protocol versions. */
  version: 11,
  /** Enrollment over plain HTTP refused (no --insecure). */
  insecure: 12,
  /** The router's operator revoked this node (`xim router nodes revoke`): enroll again with a new join key. */
  revoked: 13,
  /** `xim run`: a third SIGTERM/SIGINT exited at once, without draining (130, as shells report an interrupted command). */
  forcedStop: 130,
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
