/**
 * @module HTTP plumbing shared by the URL sources: one GET that turns
 * every failure into a `PullError` saying whether a retry can help
 * (network errors, 408, 429 and 5xx can; any other 4xx cannot, and says
 * why), `Retry-After` parsing, and ranged downloads that resume from the
 * bytes already on disk.
 */
import { messageOf } from "../../core/errors.ts";
import { redactUrlCredentials } from "../../core/secret.ts";
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

export function shownUrl(url: string): string {
  return redactUrlCredentials(url);
}

async function reasonOf(res: Response): Promise<string> {
  let text = "";
  try {
    text = (await res.text()).trim();
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
  text = text.replace(/\s+/g, " ");
  return text.length > 200 ? `${text.slice(0, 200)}...` : text;
}

/** A non-2xx response as a PullError; the body is read for the far end's reason. */
export async function statusError(
  res: Response,
  url: string,
  options: HttpGetOptions = {},
): Promise<PullError> {
  const reason = await reasonOf(res);
  const status = `HTTP ${res.status}${res.statusText ? ` ${res.statusText}` : ""}`;
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

/** GET with failures classified; resolves only for 2xx (and 206/416 when the caller asked for a range). */
export async function httpGet(
  url: string,
  options: HttpGetOptions = {},
  okStatuses: number[] = [],
): Promise<Response> {
  let res: Response;
  try {
    res = await fetch(url, { headers: options.headers, signal: options.signal, redirect: "follow" });
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
  if (cause?.code) return `${messageOf(err)} (${cause.code}${cause.message ? `: ${cause.message}` : ""})`;
  return messageOf(err);
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
    throw new PullError(
      "XIM_PULL_BAD_MANIFEST",
      `GET ${shownUrl(url)}: the response is not JSON (${messageOf(err)})`,
      {
        retryable: false,
      },
    );
  }
}

async function readText(res: Response, url: string): Promise<string> {
  try {
    return await res.text();
  } catch (err) {
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
        `GET ${shownUrl(url)}: asked for bytes from ${offset}, the server sent Content-Range "${res.headers.get("content-range")}"`,
        {
          retryable: false,
          hint: "the server's range support is broken; pull again after removing the partial file",
        },
      );
    }
  }
  return { start, body: guarded(res.body, url, options.signal) };
}
