/**
 * @module Text that came from a network peer or a file (a node's host name, a
 * model name, an engine's error message) made safe to print on a terminal:
 * control characters (ESC and the rest of C0 and C1, DEL) and Unicode
 * bidirectional overrides are replaced, so a peer cannot move the cursor,
 * rewrite earlier lines, change the window title or reorder what a person
 * reads. Newlines and tabs are replaced too unless asked to keep them.
 */

// C0 except tab/newline (kept only on request), DEL, C1, and the bidi
// embedding/override/isolate controls (U+202A-U+202E, U+2066-U+2069).
const UNSAFE = /[\u0000-\u0008\u000b-\u001f\u007f-\u009f\u202a-\u202e\u2066-\u2069]/g;
const UNSAFE_WITH_LINES = /[\u0000-\u001f\u007f-\u009f\u202a-\u202e\u2066-\u2069]/g;

export interface SafeTextOptions {
  /** Keep \n and \t (multi-line messages); default false. */
  keepLines?: boolean;
  /** Cut longer text and mark the cut with "…"; default 1000 characters. */
  maxLength?: number;
  /**
   * Write each unsafe character as its JSON escape (`\u001b`) instead of
   * U+FFFD: lossless, so JSON text stays exact (JSON.parse reads it back).
   */
  escape?: boolean;
}

function jsonEscape(c: string): string {
  return `\\u${c.charCodeAt(0).toString(16).padStart(4, "0")}`;
}

/** Replace each unsafe character with U+FFFD (or its escape) and bound the length. */
export function safeText(text: string, options: SafeTextOptions = {}): string {
  const maxLength = options.maxLength ?? 1000;
  const pattern = options.keepLines ? UNSAFE : UNSAFE_WITH_LINES;
  const cleaned = options.escape ? text.replace(pattern, jsonEscape) : text.replace(pattern, "\ufffd");
  return cleaned.length > maxLength ? `${cleaned.slice(0, maxLength)}…` : cleaned;
}

/** Whether text has nothing safeText would replace (not even a newline or tab): for schemas of peer strings. */
export function isTerminalSafe(text: string): boolean {
  return text.search(UNSAFE_WITH_LINES) === -1;
}
