/**
 * @module Server-sent events as OpenAI servers send them: `data: <json>\n\n`
 * per event, ending with `data: [DONE]\n\n`. The parser hands back each
 * event's data as a Buffer sliced from the bytes read (no decode, no
 * re-encode), so the relay forwards exactly what the engine wrote.
 */

const DONE = Buffer.from("[DONE]");
// Needles as bytes: searching with a string converts it on every call (hot path).
const LF2 = Buffer.from("\n\n");
const CRLF2 = Buffer.from("\r\n\r\n");
const LF = 0x0a;
const CR = 0x0d;
const DATA_PREFIX = Buffer.from("data: ");
const DATA_FIELD = Buffer.from("data:");
const EVENT_END = Buffer.from("\n\n");
const NEWLINE = Buffer.from("\n");

/** Whether a data payload is the end-of-stream marker. */
export function isDone(payload: Uint8Array): boolean {
  return Buffer.from(payload.buffer, payload.byteOffset, payload.byteLength).equals(DONE);
}

/** One SSE event encoded as OpenAI servers write it. */
export function sseEvent(payload: string | Uint8Array): Buffer {
  const body = typeof payload === "string" ? Buffer.from(payload) : payload;
  return Buffer.concat([DATA_PREFIX, body, EVENT_END], DATA_PREFIX.length + body.length + EVENT_END.length);
}

/** The end of the first event at or after `from`: where it ends and where the next begins. */
function eventEnd(buf: Buffer, from: number): { end: number; next: number } | undefined {
  const lf = buf.indexOf(LF2, from);
  // OpenAI servers end events with \n\n; look for \r\n\r\n only when a CR comes first.
  const cr = buf.indexOf(CR, from);
  if (lf !== -1 && (cr === -1 || cr > lf)) return { end: lf, next: lf + 2 };
  const crlf = cr === -1 ? -1 : buf.indexOf(CRLF2, cr);
  if (lf === -1 && crlf === -1) return undefined;
  if (crlf !== -1 && (lf === -1 || crlf < lf)) return { end: crlf, next: crlf + 4 };
  return { end: lf, next: lf + 2 };
}

/** The data of one event (its `data:` lines joined by \n), or undefined for comments and other fields. */
function dataOf(event: Buffer): Buffer | undefined {
  const parts: Buffer[] = [];
  let start = 0;
  while (start <= event.length) {
    let end = event.indexOf(LF, start);
    if (end === -1) end = event.length;
    let line = event.subarray(start, end);
    if (line.length > 0 && line[line.length - 1] === CR) line = line.subarray(0, line.length - 1);
    if (line.length >= 5 && DATA_FIELD.equals(line.subarray(0, 5))) {
      parts.push(line[5] === 0x20 ? line.subarray(6) : line.subarray(5));
    }
    start = end + 1;
  }
  if (parts.length === 0) return undefined;
  if (parts.length === 1) return parts[0];
  const joined: Buffer[] = [];
  for (const [i, p] of parts.entries()) {
    if (i > 0) joined.push(NEWLINE);
    joined.push(p);
  }
  return Buffer.concat(joined);
}

/**
 * Incremental parser: push the bytes as they arrive, get back the data of
 * every event completed so far. Holds at most one incomplete event.
 */
export class SseParser {
  #pending: Buffer = Buffer.alloc(0);

  push(chunk: Buffer): Buffer[] {
    const buf = this.#pending.length === 0 ? chunk : Buffer.concat([this.#pending, chunk]);
    const out: Buffer[] = [];
    let from = 0;
    for (;;) {
      const found = eventEnd(buf, from);
      if (!found) break;
      const data = dataOf(buf.subarray(from, found.end));
      if (data !== undefined) out.push(data);
      from = found.next;
    }
    this.#pending = buf.subarray(from);
    return out;
  }

  /** Bytes of an event not yet terminated by a blank line. */
  get pendingBytes(): number {
    return this.#pending.length;
  }
}
