/**
 * @module An OpenAI request body read the way the router and the node need
 * it: checked to be one well-formed JSON object and its top-level fields
 * found, without building it. Parsing made every prompt into strings twice
 * in the router and three times in the node (a 256 KiB prompt: about 1 MiB
 * of garbage per request, collected by V8's workers); this reads the bytes
 * once, allocates nothing per byte, and decodes only the fields asked for
 * (bench/README.md, "Fifth session").
 *
 * It accepts exactly what JSON.parse accepts of UTF-8 bytes (RFC 8259),
 * except invalid UTF-8 and nesting deeper than MAX_DEPTH, which it
 * refuses. Of a field written more than once, fieldValue takes the last,
 * as JSON.parse and Python's json module (vLLM's parser) both do: the
 * router and the engine must never read two different models from one body.
 */
import { isUtf8 } from "node:buffer";
import { bufferView } from "../core/buffer-view.ts";

/** Deeper than any request a client writes; Python's json gives up near 1000 (recursion limit). */
export const MAX_DEPTH = 512;

export class JsonScanError extends Error {}

/** One top-level field: its name (decoded) and where it is written, from its name's opening quote to its value's end. */
export interface JsonMember {
  key: string;
  start: number;
  end: number;
}

/** A scanned object: its top-level fields in order, and where its closing brace is. */
export interface JsonObjectScan {
  members: JsonMember[];
  /** Index of the object's closing `}` in the bytes. */
  close: number;
}

const QUOTE = 0x22;
const BACKSLASH = 0x5c;
const OPEN_BRACE = 0x7b;
const CLOSE_BRACE = 0x7d;
const OPEN_BRACKET = 0x5b;
const CLOSE_BRACKET = 0x5d;
const COLON = 0x3a;
const COMMA = 0x2c;

function isSpace(b: number): boolean {
  return b === 0x20 || b === 0x0a || b === 0x0d || b === 0x09;
}

function isDigit(b: number): boolean {
  return b >= 0x30 && b <= 0x39;
}

function isHex(b: number): boolean {
  return isDigit(b) || (b >= 0x41 && b <= 0x46) || (b >= 0x61 && b <= 0x66);
}

/** The escapes JSON allows after a backslash (besides `u`): " \ / b f n r t. */
const SIMPLE_ESCAPES = new Set([0x22, 0x5c, 0x2f, 0x62, 0x66, 0x6e, 0x72, 0x74]);

/** 1 for the bytes a string holds as they are: not a quote, a backslash or a control character. */
const PLAIN = new Uint8Array(256).map((_, b) => (b >= 0x20 && b !== QUOTE && b !== BACKSLASH ? 1 : 0));

const LITERALS = [Buffer.from("true"), Buffer.from("false"), Buffer.from("null")];

/** One pass over the bytes; `at` is the next byte to read. */
class Scanner {
  at = 0;
  readonly #b: Uint8Array;

  constructor(bytes: Uint8Array) {
    this.#b = bytes;
  }

  fail(what: string): never {
    const b = this.#b;
    if (this.at >= b.length) throw new JsonScanError(`${what}: the body ends at byte ${b.length}`);
    const c = b[this.at];
    const shown =
      c >= 0x20 && c < 0x7f ? `'${String.fromCharCode(c)}'` : `byte 0x${c.toString(16).padStart(2, "0")}`;
    throw new JsonScanError(`${what}: found ${shown} at byte ${this.at}`);
  }

  skipSpace(): void {
    const b = this.#b;
    while (this.at < b.length && isSpace(b[this.at])) this.at++;
  }

  /** The next byte after white space, without taking it (-1 at the end). */
  peek(): number {
    this.skipSpace();
    return this.at < this.#b.length ? this.#b[this.at] : -1;
  }

  expect(byte: number, what: string): void {
    if (this.peek() !== byte) this.fail(what);
    this.at++;
  }

  /** A string starting at `at` (its opening quote); returns whether it held an escape. */
  string(): boolean {
    const b = this.#b;
    const n = b.length;
    let escaped = false;
    this.at++;
    for (;;) {
      // The hot loop: a prompt is mostly one long string.
      let i = this.at;
      while (i < n && PLAIN[b[i]] === 1) i++;
      this.at = i;
      if (i >= n) this.fail("a string is not closed");
      if (b[i] === QUOTE) {
        this.at++;
        return escaped;
      }
      if (b[i] !== BACKSLASH) this.fail("a control character inside a string must be escaped");
      escaped = true;
      this.#escape();
    }
  }

  /** The escape after a backslash at `at`. */
  #escape(): void {
    const b = this.#b;
    this.at++;
    const e = this.at < b.length ? b[this.at] : -1;
    if (SIMPLE_ESCAPES.has(e)) {
      this.at++;
      return;
    }
    if (e !== 0x75) this.fail("an invalid escape in a string");
    for (let k = 1; k <= 4; k++) {
      this.at++;
      if (this.at >= b.length || !isHex(b[this.at])) this.fail("\\u must be followed by four hex digits");
    }
    this.at++;
  }

  number(): void {
    const b = this.#b;
    if (b[this.at] === 0x2d) this.at++;
    if (b[this.at] === 0x30) this.at++;
    else this.#digits("a number needs digits");
    if (b[this.at] === 0x2e) {
      this.at++;
      this.#digits("a number needs digits after its decimal point");
    }
    if (b[this.at] === 0x65 || b[this.at] === 0x45) {
      this.at++;
      if (b[this.at] === 0x2b || b[this.at] === 0x2d) this.at++;
      this.#digits("a number needs digits in its exponent");
    }
  }

  /** One or more digits. */
  #digits(what: string): void {
    if (!isDigit(this.#b[this.at])) this.fail(what);
    while (isDigit(this.#b[this.at])) this.at++;
  }

  literal(): void {
    const b = this.#b;
    for (const word of LITERALS) {
      if (b[this.at] !== word[0]) continue;
      for (let k = 0; k < word.length; k++) if (b[this.at + k] !== word[k]) this.fail("not a JSON value");
      this.at += word.length;
      return;
    }
    this.fail("not a JSON value");
  }

  /** Any value starting at the next byte; containers are walked with a stack of their closing bytes, not recursion. */
  value(): void {
    const closers: number[] = [];
    for (;;) {
      const c = this.peek();
      if (c === OPEN_BRACE || c === OPEN_BRACKET) {
        if (this.#open(c, closers)) continue;
      } else if (c === QUOTE) this.string();
      else if (c === 0x2d || isDigit(c)) this.number();
      else this.literal();
      if (this.#closeEnded(closers)) return;
    }
  }

  /** An opening `{` or `[`: true when it is not empty (its first member comes next), false once `{}` or `[]` is read. */
  #open(c: number, closers: number[]): boolean {
    if (closers.length >= MAX_DEPTH) this.fail(`nested deeper than ${MAX_DEPTH} levels`);
    this.at++;
    const close = c === OPEN_BRACE ? CLOSE_BRACE : CLOSE_BRACKET;
    if (this.peek() === close) {
      this.at++;
      return false;
    }
    closers.push(close);
    if (close === CLOSE_BRACE) this.#key();
    return true;
  }

  /** After a value: close the containers it ended; true when the outermost one is done, false when a next member follows. */
  #closeEnded(closers: number[]): boolean {
    for (;;) {
      const top = closers.at(-1);
      if (top === undefined) return true;
      const n = this.peek();
      if (n === top) {
        this.at++;
        closers.pop();
        continue;
      }
      if (n !== COMMA) this.fail(`expected ',' or '${String.fromCharCode(top)}'`);
      this.at++;
      if (top === CLOSE_BRACE) this.#key();
      return false;
    }
  }

  /** A member's key and its colon, inside an object below the top level. */
  #key(): void {
    if (this.peek() !== QUOTE) this.fail("expected a field name in double quotes");
    this.string();
    this.expect(COLON, "expected ':' after a field name");
  }
}

/**
 * Checks that `bytes` are one JSON object (white space around it allowed)
 * and returns its top-level fields and where it closes. Throws
 * JsonScanError naming what is wrong and at which byte.
 */
export function scanJsonObject(bytes: Uint8Array): JsonObjectScan {
  if (!isUtf8(bytes)) throw new JsonScanError("the body is not valid UTF-8");
  const buf = bufferView(bytes);
  const s = new Scanner(buf);
  s.expect(OPEN_BRACE, "expected a JSON object");
  const members: JsonMember[] = [];
  if (s.peek() !== CLOSE_BRACE) {
    for (;;) {
      members.push(member(s, buf));
      const n = s.peek();
      if (n === CLOSE_BRACE) break;
      if (n !== COMMA) s.fail("expected ',' or '}'");
      s.at++;
    }
  }
  const close = s.at;
  s.at++;
  if (s.peek() !== -1) s.fail("unexpected text after the JSON object");
  return { members, close };
}

/** One top-level field, its name decoded. */
function member(s: Scanner, buf: Buffer): JsonMember {
  if (s.peek() !== QUOTE) s.fail("expected a field name in double quotes");
  const start = s.at;
  const escaped = s.string();
  // A name written with escapes (`"mod\u0065l"`) is the same field to every parser.
  const key = escaped
    ? (JSON.parse(buf.toString("utf8", start, s.at)) as string)
    : buf.toString("utf8", start + 1, s.at - 1);
  s.expect(COLON, "expected ':' after a field name");
  s.value();
  return { key, start, end: s.at };
}

/** The value of a top-level field, decoded (the last one written, as every JSON parser takes it), or undefined. */
export function fieldValue(bytes: Uint8Array, scan: JsonObjectScan, key: string): unknown {
  const m = scan.members.findLast((x) => x.key === key);
  if (!m) return undefined;
  const text = bufferView(bytes).toString("utf8", m.start, m.end);
  return (JSON.parse(`{${text}}`) as Record<string, unknown>)[key];
}
