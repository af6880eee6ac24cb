/**
 * @module What a pull tells the outside while it runs, and three ways to
 * show it: a progress bar with bytes, rate and ETA (cli-progress) on a
 * terminal, a log line every few seconds otherwise, and JSON lines for
 * scripts. `xim run` forwards the same events to the router.
 */
import cliProgress from "cli-progress";
import { formatBytes } from "../core/bytes-text.ts";
import { redactUrlCredentials } from "../core/secret.ts";
import { safeText } from "../core/terminal-text.ts";

export type PullEvent =
  | { type: "manifest"; name: string; source: string; files: number; totalBytes: number }
  | { type: "waiting"; name: string; owner?: string }
  | { type: "cached"; name: string; path: string; totalBytes: number }
  | { type: "evicted"; name: string; sizeBytes: number }
  | { type: "start"; name: string; totalBytes: number; resumedBytes: number }
  | {
      type: "progress";
      name: string;
      file: string;
      bytes: number;
      totalBytes: number;
      rateBytesPerSec: number;
      etaSeconds: number | null;
    }
  | { type: "retry"; name: string; retry: number; maxAttempts: number; delayMs: number; reason: string }
  | { type: "verified"; name: string; file: string; check: string }
  | {
      type: "done";
      name: string;
      path: string;
      totalBytes: number;
      downloadedBytes: number;
      seconds: number;
    };

export type PullEventSink = (event: PullEvent) => void;

/** Bytes per second over a sliding window, from an injected clock. */
export class RateMeter {
  readonly #windowMs: number;
  readonly #samples: Array<{ t: number; bytes: number }> = [];

  constructor(windowMs = 5000) {
    this.#windowMs = windowMs;
  }

  /** Record the running byte count at time t; returns the current rate. */
  sample(t: number, bytes: number): number {
    this.#samples.push({ t, bytes });
    while (this.#samples.length > 2 && t - this.#samples[1].t >= this.#windowMs) this.#samples.shift();
    const first = this.#samples[0];
    const dt = t - first.t;
    return dt > 0 ? ((bytes - first.bytes) * 1000) / dt : 0;
  }
}

export function formatDuration(seconds: number): string {
  const s = Math.max(0, Math.round(seconds));
  if (s < 60) return `${s}s`;
  if (s < 3600) return `${Math.floor(s / 60)}m${String(s % 60).padStart(2, "0")}s`;
  return `${Math.floor(s / 3600)}h${String(Math.floor((s % 3600) / 60)).padStart(2, "0")}m`;
}

/**
 * The event with its text made printable: names and file names come from
 * the source, reasons quote servers, and a source address may carry a
 * credential. JSON escapes control characters itself; redaction applies to
 * both outputs.
 */
function printable(event: PullEvent, forTerminal: boolean): PullEvent {
  const clean = (text: string) => {
    const redacted = redactUrlCredentials(text);
    return forTerminal ? safeText(redacted, { maxLength: 500 }) : redacted;
  };
  const out: Record<string, unknown> = { ...event };
  for (const [key, value] of Object.entries(out)) if (typeof value === "string") out[key] = clean(value);
  return out as PullEvent;
}

/** JSON lines, one event per line, each with a timestamp. */
export function jsonLinesReporter(
  write: (line: string) => void,
  now: () => number = Date.now,
): PullEventSink {
  return (event) =>
    write(`${JSON.stringify({ ts: new Date(now()).toISOString(), ...printable(event, false) })}\n`);
}

function progressLine(e: Extract<PullEvent, { type: "progress" }>): string {
  const pct = e.totalBytes > 0 ? ((100 * e.bytes) / e.totalBytes).toFixed(1) : "100.0";
  const eta = e.etaSeconds === null ? "unknown" : formatDuration(e.etaSeconds);
  return `pulling ${e.name}: ${formatBytes(e.bytes)} of ${formatBytes(e.totalBytes)} (${pct}%), ${formatBytes(e.rateBytesPerSec)}/s, ETA ${eta}`;
}

/** Plain lines for logs and pipes: progress at most every `intervalMs`, everything else at once. */
export function lineReporter(
  write: (line: string) => void,
  options: { intervalMs?: number; now?: () => number } = {},
): PullEventSink {
  const intervalMs = options.intervalMs ?? 10_000;
  const now = options.now ?? Date.now;
  let last = Number.NEGATIVE_INFINITY;
  return (event) => {
    const e = printable(event, true);
    switch (e.type) {
      case "manifest":
        return write(`${e.name}: ${e.files} files, ${formatBytes(e.totalBytes)} from ${e.source}\n`);
      case "waiting":
        return write(
          `${e.name}: another pull of this model is running${e.owner ? ` (${e.owner})` : ""}; waiting\n`,
        );
      case "cached":
        return write(`${e.name}: already in the cache at ${e.path}\n`);
      case "evicted":
        return write(`evicted ${e.name} (${formatBytes(e.sizeBytes)}, least recently used) to make room\n`);
      case "start":
        return write(
          `pulling ${e.name}: ${formatBytes(e.totalBytes)}${e.resumedBytes > 0 ? `, resuming with ${formatBytes(e.resumedBytes)} already on disk` : ""}\n`,
        );
      case "progress": {
        const t = now();
        if (t - last < intervalMs) return;
        last = t;
        return write(`${progressLine(e)}\n`);
      }
      case "retry":
        return write(
          `${e.name}: ${e.reason}; retry ${e.retry} of ${e.maxAttempts} in ${formatDuration(e.delayMs / 1000)}\n`,
        );
      case "verified":
        return;
      case "done":
        return write(
          `pulled ${e.name} to ${e.path}: ${formatBytes(e.downloadedBytes)} downloaded in ${formatDuration(e.seconds)}\n`,
        );
    }
  };
}

/** A terminal progress bar (bytes, rate, ETA) on `stream`; other events print above it. */
export function barReporter(stream: NodeJS.WritableStream & { isTTY?: boolean }): PullEventSink {
  let bar: cliProgress.SingleBar | undefined;
  const lines = lineReporter((line) => {
    if (bar) bar.stop();
    bar = undefined;
    stream.write(line);
  });
  return (e) => {
    if (e.type !== "progress") {
      if (e.type === "done" && bar) {
        bar.update(e.totalBytes);
        bar.stop();
        bar = undefined;
      }
      return lines(e);
    }
    if (!bar) {
      bar = new cliProgress.SingleBar({
        stream,
        format: " {bar} {percentage}% | {done} of {total_h} | {rate}/s | ETA {eta_h}",
        hideCursor: true,
        clearOnComplete: false,
        etaBuffer: 50,
      });
      bar.start(e.totalBytes, e.bytes, {
        done: formatBytes(e.bytes),
        total_h: formatBytes(e.totalBytes),
        rate: "-",
        eta_h: "-",
      });
    }
    bar.update(e.bytes, {
      done: formatBytes(e.bytes),
      total_h: formatBytes(e.totalBytes),
      rate: formatBytes(e.rateBytesPerSec),
      eta_h: e.etaSeconds === null ? "-" : formatDuration(e.etaSeconds),
    });
  };
}
