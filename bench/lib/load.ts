/**
 * @module The benchmark's load generator: N streaming chat completions at a
 * fixed concurrency over keep-alive HTTP, measuring time to first token per
 * request, SSE events (chunks) and content tokens, bytes, and errors. It
 * counts `data:` events in the raw bytes instead of parsing JSON, so the
 * client costs as little CPU as possible on a machine it shares with the
 * system under test. With an engine that stamps its events
 * (`engine-sim --stamp-chunks`), it also measures each event's lag: its
 * arrival here less its writing by the engine, both on the host's
 * monotonic clock, so a relay that holds chunks back and sends them in
 * clumps shows at once.
 */
import http from "node:http";
import { performance } from "node:perf_hooks";

export interface LoadOptions {
  url: string;
  concurrency: number;
  requests: number;
  body: Record<string, unknown>;
  headers?: Record<string, string>;
  /** Per-request deadline; a request past it counts as an error. */
  timeoutMs?: number;
  /** The engine stamps its events (engine-sim --stamp-chunks): measure each one's lag. */
  stamped?: boolean;
}

export interface LoadResult {
  requests: number;
  ok: number;
  errors: number;
  errorSamples: string[];
  wallMs: number;
  ttftMs: number[];
  chunks: number;
  bytes: number;
  /** Per stamped event: arrival at the client less its writing by the engine, ms (empty without stamps). */
  chunkLagMs: number[];
}

/** The host's monotonic clock in ms: the engine's stamps use the same clock. */
function monotonicMs(): number {
  return Number(process.hrtime.bigint()) / 1e6;
}

const STAMP = /"xim_sent_mono_ms":(\d+(?:\.\d+)?)[,}]/g;

/**
 * The engine's stamps in a stream's bytes, read across reads: `text` is
 * what came since the last complete stamp; returns the text to keep.
 */
export function readStamps(text: string, arrivedAt: number, lags: number[]): string {
  let end = 0;
  STAMP.lastIndex = 0;
  for (let m = STAMP.exec(text); m; m = STAMP.exec(text)) {
    lags.push(arrivedAt - Number(m[1]));
    end = STAMP.lastIndex;
  }
  // A stamp cut by the read's end is completed by the next one; it is never longer than this.
  return text.slice(Math.max(end, text.length - 64));
}

const DATA = Buffer.from("data: ");
const DONE = Buffer.from("data: [DONE]");

function countOccurrences(buf: Buffer, needle: Buffer): number {
  let n = 0;
  for (let i = buf.indexOf(needle); i >= 0; i = buf.indexOf(needle, i + needle.length)) n++;
  return n;
}

function oneRequest(
  agent: http.Agent,
  opts: LoadOptions,
  payload: Buffer,
  lags: number[],
): Promise<{ ttft: number; chunks: number; bytes: number; error?: string }> {
  const url = new URL(opts.url);
  return new Promise((resolve) => {
    const started = performance.now();
    let ttft = -1;
    let chunks = 0;
    let bytes = 0;
    let sawDone = false;
    let tail: Buffer = Buffer.alloc(0);
    let stampTail = "";
    const req = http.request(
      {
        agent,
        host: url.hostname,
        port: url.port,
        path: url.pathname,
        method: "POST",
        headers: { "content-type": "application/json", "content-length": payload.length, ...opts.headers },
        timeout: opts.timeoutMs ?? 120_000,
      },
      (res) => {
        if (res.statusCode !== 200) {
          let text = "";
          res.setEncoding("utf8");
          res.on("data", (d: string) => {
            text += d;
          });
          res.on("end", () =>
            resolve({ ttft, chunks, bytes, error: `HTTP ${res.statusCode}: ${text.slice(0, 200)}` }),
          );
          return;
        }
        res.on("data", (d: Buffer) => {
          if (ttft < 0) ttft = performance.now() - started;
          if (opts.stamped) stampTail = readStamps(stampTail + d.toString("latin1"), monotonicMs(), lags);
          bytes += d.length;
          // An event marker can straddle two TCP reads: look across the seam.
          const joined = tail.length ? Buffer.concat([tail, d]) : d;
          chunks += countOccurrences(joined, DATA) - (tail.length ? countOccurrences(tail, DATA) : 0);
          if (!sawDone && joined.includes(DONE)) sawDone = true;
          tail = joined.subarray(Math.max(0, joined.length - DONE.length));
        });
        res.on("end", () =>
          resolve(
            sawDone ? { ttft, chunks, bytes } : { ttft, chunks, bytes, error: "stream ended without [DONE]" },
          ),
        );
        res.on("error", (err) => resolve({ ttft, chunks, bytes, error: err.message }));
      },
    );
    req.on("timeout", () => req.destroy(new Error("request timed out")));
    req.on("error", (err) => resolve({ ttft, chunks, bytes, error: err.message }));
    req.end(payload);
  });
}

export async function runLoad(opts: LoadOptions): Promise<LoadResult> {
  const agent = new http.Agent({ keepAlive: true, maxSockets: opts.concurrency });
  const payload = Buffer.from(JSON.stringify({ ...opts.body, stream: true }));
  const result: LoadResult = {
    requests: opts.requests,
    ok: 0,
    errors: 0,
    errorSamples: [],
    wallMs: 0,
    ttftMs: [],
    chunks: 0,
    bytes: 0,
    chunkLagMs: [],
  };
  let next = 0;
  const started = performance.now();
  async function worker() {
    while (next < opts.requests) {
      next++;
      const r = await oneRequest(agent, opts, payload, result.chunkLagMs);
      result.chunks += r.chunks;
      result.bytes += r.bytes;
      if (r.error) {
        result.errors++;
        if (result.errorSamples.length < 5) result.errorSamples.push(r.error);
      } else {
        result.ok++;
        result.ttftMs.push(r.ttft);
      }
    }
  }
  await Promise.all(Array.from({ length: Math.min(opts.concurrency, opts.requests) }, worker));
  result.wallMs = performance.now() - started;
  agent.destroy();
  return result;
}

export function percentile(values: number[], p: number): number {
  if (values.length === 0) return Number.NaN;
  const sorted = [...values].sort((a, b) => a - b);
  const i = Math.min(sorted.length - 1, Math.max(0, Math.ceil((p / 100) * sorted.length) - 1));
  return sorted[i];
}
