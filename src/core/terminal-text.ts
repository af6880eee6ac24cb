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
}

/** Replace each unsafe character with U+FFFD and bound the length. */
export function safeText(text: string, options: SafeTextOptions = {}): string {
  const maxLength = options.maxLength ?? 1000;
  const cleaned = text.replace(options.keepLines ? UNSAFE : UNSAFE_WITH_LINES, "\ufffd");
  return cleaned.length > maxLength ? `${cleaned.slice(0, maxLength)}…` : cleaned;
}
