/**
 * @module What a stream's `stream_end` reports from the engine's own
 * output: the finish reason and the token usage. The relay forwards the
 * engine's bytes without decoding them, so these are found with byte
 * needles in each block (one backwards search each, usually stopping in
 * the last events) and only the event that carries usage is decoded.
 */

const FINISH_REASON = Buffer.from('"finish_reason":"');
const USAGE = Buffer.from('"usage":{');
const QUOTE = 0x22;
const EVENT_END = Buffer.from("\n\n");
const DATA_PREFIX = Buffer.from("data:");

export interface Usage {
  promptTokens: number;
  completionTokens: number;
}

/** The last non-null `finish_reason` in these bytes (SSE events or a JSON body). */
export function finishReasonIn(bytes: Buffer): string | undefined {
  const at = bytes.lastIndexOf(FINISH_REASON);
  if (at === -1) return undefined;
  const from = at + FINISH_REASON.length;
  const to = bytes.indexOf(QUOTE, from);
  return to > from && to - from <= 64 ? bytes.toString("utf8", from, to) : undefined;
}

/** The last `usage` object in these bytes, from the one event (or JSON body) that holds it. */
export function usageIn(bytes: Buffer): Usage | undefined {
  const at = bytes.lastIndexOf(USAGE);
  if (at === -1) return undefined;
  try {
    const u = (JSON.parse(eventAround(bytes, at).toString("utf8")) as { usage?: Record<string, unknown> })
      .usage;
    if (u && typeof u.prompt_tokens === "number" && typeof u.completion_tokens === "number")
      return { promptTokens: u.prompt_tokens, completionTokens: u.completion_tokens };
  } catch {
    // not JSON: no usage to report
  }
  return undefined;
}

/** The JSON of the SSE event around `at` (after `data:`), or the whole body when it is not SSE. */
function eventAround(bytes: Buffer, at: number): Buffer {
  const before = bytes.lastIndexOf(EVENT_END, at);
  const start = before === -1 ? 0 : before + 2;
  const after = bytes.indexOf(EVENT_END, at);
  const event = bytes.subarray(start, after === -1 ? bytes.length : after);
  return event.subarray(0, DATA_PREFIX.length).equals(DATA_PREFIX)
    ? event.subarray(DATA_PREFIX.length)
    : event;
}
