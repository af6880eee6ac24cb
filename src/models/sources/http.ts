/**
 * @module HTTP plumbing shared by the URL sources: one GET that turns
 * every failure into a `PullError` saying whether a retry can help
 * (network errors, 408, 429 and 5xx can; any other 4xx cannot, and says
 * why), `Retry-After` parsing, and ranged downloads that resume from the
 * bytes already on disk. What a server sends is bounded while it streams
 * (a JSON document at `NETWORK_LIMITS.jsonBytes`, an error body read only
 * as far as `NETWORK_LIMITS.errorBodyBytes`), and every URL and server text
 * that reaches a message has its credentials redacted and is made safe for
 * a terminal. Credentials in an address (`https://user:pw@mirror/`) are
 * sent as HTTP Basic; fetch() itself refuses such URLs.
 */
import { FileLimits } from "../../core/bounded-read.ts";
import { messageOf } from "../../core/errors.ts";
import { redactUrlCredentials } from "../../core/secret.ts";
import { safeText } from "../../core/terminal-text.ts";
import type { FetchedFile } from "../source.ts";
import { PullError } from "../source.ts";

export interface HttpGetOptions {
  headers?: Record<string, string>;
  signal?: AbortSignal;
  /** Wall clock for HTTP-date Retry-After values. */
  now?: () => number;
  /** Hint for a 401/403 (which credential to set). */
  authHint?: string;
}

/** Retry-After in milliseconds: delta-seconds or an HTTP date; undefined when absent or unreadable. */
export function parseRetryAfter(value: string | null, now: number = Date.now()): number | undefined {
  if (value === null) return undefined;
  const text = value.trim();
  if (/^\d+$/.test(text)) return Number(text) * 1000;
  const date = Date.parse(text);
  if (Number.isNaN(date)) return undefined;
  return Math.max(0, date - now);
}

/** What is read from a server at most, in bytes. */
export const NETWORK_LIMITS = {
  /** A manifest or one page of a hub's file listing (the same cap as a manifest read from disk). */
  jsonBytes: FileLimits.manifest,
  /** The part of an error response read for its reason; the rest is dropped unread. */
  errorBodyBytes: 16 * 1024,
} as const;

/** A URL as it may be printed: credentials redacted, terminal controls replaced. */
export function shownUrl(url: string): string {
  return safeText(redactUrlCredentials(url), { maxLength: 500 });
}

/** Text a server or the network stack produced, as it may be printed. */
function shownText(text: string, maxLength = 300): string {
  return safeText(redactUrlCredentials(text), { maxLength });
}

class TooLarge extends Error {}

/**
 * The body as text, read as it streams and abandoned once it passes
 * `maxBytes` (`TooLarge`), so a server cannot make the pull buffer an
 * endless or huge response. A Content-Length over the limit is refused
 * before a byte is read.
 */
async function readBounded(res: Response, maxBytes: number): Promise<string> {
  const declared = Number(res.headers.get("content-length") ?? Number.NaN);
  if (declared > maxBytes) {
    await res.body?.cancel().catch(() => {});
    throw new TooLarge();
  }
  if (!res.body) return "";
  const reader = res.body.getReader();
  const chunks: Uint8Array[] = [];
  let total = 0;
  for (;;) {
    const { done, value } = await reader.read();
    if (done) break;
    total += value.byteLength;
    if (total > maxBytes) {
      await reader.cancel().catch(() => {});
      throw new TooLarge();
    }
    chunks.push(value);
  }
  return Buffer.concat(chunks).toString("utf8");
}

/** At most the first `maxBytes` of the body; the rest is not read. */
async function readPrefix(res: Response, maxBytes: number): Promise<string> {
  if (!res.body) return "";
  const reader = res.body.getReader();
  const chunks: Uint8Array[] = [];
  let total = 0;
  try {
    while (total < maxBytes) {
      const { done, value } = await reader.read();
      if (done) break;
      chunks.push(value);
      total += value.byteLength;
    }
  } finally {
    await reader.cancel().catch(() => {});
  }
  return Buffer.concat(chunks).subarray(0, maxBytes).toString("utf8");
}

async function reasonOf(res: Response): Promise<string> {
  let text = "";
  try {
    text = (await readPrefix(res, NETWORK_LIMITS.errorBodyBytes)).trim();
  } catch {
    return "";
  }
  try {
    const body = JSON.parse(text) as { error?: unknown; message?: unknown };
    const message = body.error ?? body.message;
    if (typeof message === "string") text = message;
  } catch {
    // not JSON: keep the text
  }
  return shownText(text.replace(/\s+/g, " "), 200);
}

/** A non-2xx response as a PullError; the body is read for the far end's reason. */
export async function statusError(
  res: Response,
  url: string,
  options: HttpGetOptions = {},
): Promise<PullError> {
  const reason = await reasonOf(res);
  const status = `HTTP ${res.status}${res.statusText ? ` ${shownText(res.statusText, 100)}` : ""}`;
  const message = `GET ${shownUrl(url)}: ${status}${reason ? `: ${reason}` : ""}`;
  const retryable = res.status === 408 || res.status === 429 || res.status >= 500;
  const retryAfterMs =
    res.status === 429 || res.status === 503
      ? parseRetryAfter(res.headers.get("retry-after"), options.now?.() ?? Date.now())
      : undefined;
  let hint: string | undefined;
  if (res.status === 401 || res.status === 403) hint = options.authHint;
  else if (res.status === 404) hint = "check the model name, revision and file list at the source";
  return new PullError(retryable ? "XIM_PULL_UNAVAILABLE" : "XIM_PULL_REFUSED", message, {
    retryable,
    retryAfterMs,
    hint,
  });
}

/**
 * fetch() refuses a URL with `user:password@`: take the credentials out
 * and send them as HTTP Basic, unless the caller already authenticates
 * (a hub token). fetch drops the header on a redirect to another origin.
 */
function withBasicAuth(url: string, headers: Record<string, string> = {}) {
  let parsed: URL;
  try {
    parsed = new URL(url);
  } catch {
    return { url, headers };
  }
  if (!parsed.username && !parsed.password) return { url, headers };
  const user = decodeURIComponent(parsed.username);
  const password = decodeURIComponent(parsed.password);
  parsed.username = "";
  parsed.password = "";
  if (Object.keys(headers).some((k) => k.toLowerCase() === "authorization")) {
    return { url: parsed.toString(), headers };
  }
  const basic = Buffer.from(`${user}:${password}`).toString("base64");
  return { url: parsed.toString(), headers: { ...headers, authorization: `Basic ${basic}` } };
}

/** GET with failures classified; resolves only for 2xx (and 206/416 when the caller asked for a range). */
export async function httpGet(
  url: string,
  options: HttpGetOptions = {},
  okStatuses: number[] = [],
): Promise<Response> {
  let res: Response;
  try {
    const request = withBasicAuth(url, options.headers);
    res = await fetch(request.url, {
      headers: request.headers,
      signal: options.signal,
      redirect: "follow",
    });
  } catch (err) {
    if (options.signal?.aborted) throw err;
    throw new PullError("XIM_PULL_NETWORK", `GET ${shownUrl(url)}: ${networkReason(err)}`, {
      retryable: true,
      cause: err,
    });
  }
  if ((res.status >= 200 && res.status < 300) || okStatuses.includes(res.status)) return res;
  throw await statusError(res, url, options);
}

function networkReason(err: unknown): string {
  const cause = (err as { cause?: { code?: string; message?: string } }).cause;
  if (cause?.code) {
    return shownText(`${messageOf(err)} (${cause.code}${cause.message ? `: ${cause.message}` : ""})`);
  }
  return shownText(messageOf(err));
}

/** A JSON document, parsed; a body that is not JSON is a non-retryable error. */
export async function getJson(url: string, options: HttpGetOptions = {}): Promise<unknown> {
  return (await getJsonPage(url, options)).body;
}

/** The `rel="next"` address of a Link header (paginated listings), resolved against `base`. */
export function nextLink(header: string | null, base: string): string | undefined {
  if (!header) return undefined;
  for (const part of header.split(",")) {
    const m = /<([^>]+)>\s*;\s*rel="?next"?/.exec(part);
    if (m) return new URL(m[1], base).toString();
  }
  return undefined;
}

/** A JSON page and the address of the next page, if the server paginates. */
export async function getJsonPage(
  url: string,
  options: HttpGetOptions = {},
): Promise<{ body: unknown; next: string | undefined }> {
  const res = await httpGet(url, { ...options, headers: { accept: "application/json", ...options.headers } });
  const next = nextLink(res.headers.get("link"), url);
  return { body: await parseJson(res, url), next };
}

async function parseJson(res: Response, url: string): Promise<unknown> {
  const text = await readText(res, url);
  try {
    return JSON.parse(text);
  } catch (err) {
    // V8's message quotes the start of the body: the server's text.
    throw new PullError(
      "XIM_PULL_BAD_MANIFEST",
      `GET ${shownUrl(url)}: the response is not JSON (${shownText(messageOf(err), 200)})`,
      {
        retryable: false,
      },
    );
  }
}

async function readText(res: Response, url: string): Promise<string> {
  try {
    return await readBounded(res, NETWORK_LIMITS.jsonBytes);
  } catch (err) {
    if (err instanceof TooLarge) {
      throw new PullError(
        "XIM_PULL_TOO_LARGE",
        `GET ${shownUrl(url)}: the response is larger than ${NETWORK_LIMITS.jsonBytes} bytes, the limit for a model manifest or file listing; it was not read further`,
        {
          retryable: false,
          hint: "check that the address names a model manifest (or a hub API); a model lists far fewer files than this",
        },
      );
    }
    throw new PullError(
      "XIM_PULL_NETWORK",
      `GET ${shownUrl(url)}: the transfer broke (${networkReason(err)})`,
      {
        retryable: true,
        cause: err,
      },
    );
  }
}

async function* guarded(
  body: ReadableStream<Uint8Array>,
  url: string,
  signal: AbortSignal | undefined,
): AsyncIterable<Uint8Array> {
  try {
    for await (const chunk of body) yield chunk;
  } catch (err) {
    if (signal?.aborted) throw err;
    throw new PullError(
      "XIM_PULL_NETWORK",
      `GET ${shownUrl(url)}: the transfer broke (${networkReason(err)})`,
      {
        retryable: true,
        cause: err,
      },
    );
  }
}

/**
 * Stream a file from `offset`. A server that answers 200 to a Range
 * request does not resume: the bytes start at 0 and the caller restarts
 * the file. 416 (range past the end) means the bytes on disk are already
 * all there is; an empty body at `offset` lets the size check decide.
 */
export async function fetchFrom(
  url: string,
  offset: number,
  options: HttpGetOptions = {},
): Promise<FetchedFile> {
  const headers = { ...options.headers, ...(offset > 0 ? { range: `bytes=${offset}-` } : {}) };
  const res = await httpGet(url, { ...options, headers }, [416]);
  if (res.status === 416) {
    await res.body?.cancel();
    return { start: offset, body: (async function* () {})() };
  }
  if (!res.body) return { start: 0, body: (async function* () {})() };
  let start = 0;
  if (res.status === 206) {
    const range = /^bytes (\d+)-/.exec(res.headers.get("content-range") ?? "");
    start = range ? Number(range[1]) : Number.NaN;
    if (start !== offset) {
      await res.body.cancel();
      throw new PullError(
        "XIM_PULL_RANGE",
        `GET ${shownUrl(url)}: asked for bytes from ${offset}, the server sent Content-Range "${shownText(res.headers.get("content-range") ?? "", 100)}"`,
        {
          retryable: false,
          hint: "the server's range support is broken; pull again after removing the partial file",
        },
      );
    }
  }
  return { start, body: guarded(res.body, url, options.signal) };
}
