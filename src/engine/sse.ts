/**
 * @module Server-sent events as OpenAI servers send them: `data: <json>\n\n`
 * per event, ending with `data: [DONE]\n\n`. Two readers: SseBlockReader
 * hands the relay whole events as the engine wrote them, as many as one
 * socket read holds (the relay's hot path: one scan for the last event
 * end, no copy, no per-event work); SseParser hands back each event's data
 * (tests, and the block reader's fallback for engines that end lines with
 * CRLF).
 */
import { bufferView } from "../core/buffer-view.ts";

const DONE = Buffer.from("[DONE]");
const DONE_EVENT = Buffer.from("data: [DONE]\n\n");
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
  return bufferView(payload).equals(DONE);
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

/** Whole SSE events, byte for byte as the engine wrote them. */
export interface SseBlock {
  bytes: Buffer;
  /** The block ends with the `data: [DONE]` event: the stream is complete. */
  done: boolean;
}

/**
 * Incremental reader of whole events: push the bytes of each socket read,
 * get back every event completed so far as one block (undefined while none
 * is), holding at most one incomplete event. Events that end with \n\n (every
 * OpenAI server) pass untouched; once a CR shows up the reader re-encodes
 * each event as `data: <payload>\n\n`, so a client never sees an event
 * split or a framing the router does not cut at.
 */
export class SseBlockReader {
  #pending: Buffer | undefined;
  #parser: SseParser | undefined;
  /** Whether the first event ended with \n\n and no CR: a server frames every event the same way. */
  #lfFramed = false;

  push(chunk: Buffer): SseBlock | undefined {
    if (this.#parser) return this.#normalised(chunk);
    const buf = this.#pending ? Buffer.concat([this.#pending, chunk]) : chunk;
    // JSON payloads cannot hold a raw CR, so a CR is framing; looked for until the first event ended.
    if (!this.#lfFramed && buf.includes(CR)) {
      this.#pending = undefined;
      this.#parser = new SseParser();
      return this.#normalised(buf);
    }
    const end = buf.lastIndexOf(LF2);
    if (end === -1) {
      this.#pending = buf;
      return undefined;
    }
    const cut = end + 2;
    this.#lfFramed = true;
    this.#pending = cut < buf.length ? buf.subarray(cut) : undefined;
    const bytes = buf.subarray(0, cut);
    return { bytes, done: endsWithDone(bytes) };
  }

  /** Bytes of an event not yet terminated by a blank line. */
  get pendingBytes(): number {
    return this.#parser ? this.#parser.pendingBytes : (this.#pending?.length ?? 0);
  }

  #normalised(chunk: Buffer): SseBlock | undefined {
    const payloads = (this.#parser as SseParser).push(chunk);
    if (payloads.length === 0) return undefined;
    return {
      bytes: Buffer.concat(payloads.map((p) => sseEvent(p))),
      done: isDone(payloads[payloads.length - 1]),
    };
  }
}

function endsWithDone(bytes: Buffer): boolean {
  const at = bytes.length - DONE_EVENT.length;
  return at >= 0 && (at === 0 || bytes[at - 1] === LF) && bytes.subarray(at).equals(DONE_EVENT);
}

/** The data payloads of a stream of blocks (for callers that want events one by one). */
export async function* ssePayloads(blocks: AsyncIterable<SseBlock>): AsyncGenerator<Buffer, void, undefined> {
  const parser = new SseParser();
  for await (const block of blocks) yield* parser.push(block.bytes);
}
