/**
 * @module The contract between `pullModel` and a place models come from.
 * A source lists the files (`manifest`) and streams one file from a byte
 * offset (`fetchFile`), which is all resume needs: HTTP sources send a
 * Range request, the router channel resumes by offset. Failures are thrown
 * as `PullError`s that say whether another attempt can help, so the retry
 * loop never has to know which transport failed.
 */
import { XimError } from "../core/errors.ts";
import type { Manifest, ManifestFile } from "../protocol/manifest.ts";

export interface FetchedFile {
  /**
   * The offset the bytes start at. Usually the offset asked for; 0 when the
   * far end cannot resume (an HTTP server that ignores Range), in which case
   * the caller restarts the file.
   */
  start: number;
  body: AsyncIterable<Uint8Array>;
}

export interface ModelSource {
  /** Where the model comes from, for logs and the cache record (never carries a token). */
  readonly description: string;
  manifest(signal?: AbortSignal): Promise<Manifest>;
  fetchFile(file: ManifestFile, offset: number, signal?: AbortSignal): Promise<FetchedFile>;
}

export interface PullErrorOptions {
  retryable: boolean;
  /** The far end asked for this pause (Retry-After) before the next attempt. */
  retryAfterMs?: number;
  hint?: string;
  cause?: unknown;
  /**
   * Count this failure against the retry budget even if the attempt moved
   * bytes (a checksum mismatch is not progress).
   */
  countAttempt?: boolean;
}

/** A failed step of a pull; `retryable` decides whether the retry loop tries again. */
export class PullError extends XimError {
  readonly retryable: boolean;
  readonly retryAfterMs: number | undefined;
  readonly countAttempt: boolean;

  constructor(code: string, message: string, options: PullErrorOptions) {
    super(code, message, { hint: options.hint, cause: options.cause });
    this.name = "PullError";
    this.retryable = options.retryable;
    this.retryAfterMs = options.retryAfterMs;
    this.countAttempt = options.countAttempt === true;
  }
}
