/**
 * @module One measured cell of the benchmark (a path at a concurrency in a
 * scenario), and how the runs of a cell combine into one row: the median of
 * each figure, the largest peak RSS, every request and error counted.
 */

export interface Row {
  scenario: string;
  /** Whether the relay ran on CPUs of its own (bench --pin). */
  pinned: boolean;
  path: string;
  concurrency: number;
  requests: number;
  ok: number;
  errors: number;
  errorSamples: string[];
  ttftP50Ms: number;
  ttftP99Ms: number;
  tokensPerSecond: number;
  chunksPerSecond: number;
  /** Arrival at the client less the engine's writing, per event (the buffering tripwire). */
  chunkLagP50Ms: number | null;
  chunkLagP99Ms: number | null;
  relayCpuSeconds: Record<string, number>;
  /** CPU-s per million chunks delivered, per relay process (router, node; nginx's master and workers as one). */
  cpuPerMillionChunks: Record<string, number>;
  relayPeakRssMiB: Record<string, number>;
  cpuSecondsPerMillionChunks: number | null;
}

export function median(xs: number[]): number {
  const sorted = [...xs].sort((a, b) => a - b);
  const mid = Math.floor(sorted.length / 2);
  return sorted.length % 2 ? sorted[mid] : (sorted[mid - 1] + sorted[mid]) / 2;
}

function medianOrNull(xs: Array<number | null>): number | null {
  const present = xs.filter((x): x is number => x !== null);
  return present.length ? median(present) : null;
}

/** The median (or `pick`) of each process's figure over the runs. */
function perProcess(
  runs: Row[],
  f: (r: Row) => Record<string, number>,
  pick: (xs: number[]) => number,
): Record<string, number> {
  return Object.fromEntries(Object.keys(f(runs[0])).map((k) => [k, pick(runs.map((r) => f(r)[k]))]));
}

/**
 * One row for a cell run several times: the median of each figure, the
 * largest peak RSS, and every request and error counted (none is hidden
 * by a median).
 */
export function combine(runs: Row[]): Row {
  if (runs.length === 1) return runs[0];
  const of = (f: (r: Row) => number) => median(runs.map(f));
  return {
    ...runs[0],
    requests: runs.reduce((n, r) => n + r.requests, 0),
    ok: runs.reduce((n, r) => n + r.ok, 0),
    errors: runs.reduce((n, r) => n + r.errors, 0),
    errorSamples: runs.flatMap((r) => r.errorSamples).slice(0, 5),
    ttftP50Ms: of((r) => r.ttftP50Ms),
    ttftP99Ms: of((r) => r.ttftP99Ms),
    tokensPerSecond: of((r) => r.tokensPerSecond),
    chunksPerSecond: of((r) => r.chunksPerSecond),
    chunkLagP50Ms: medianOrNull(runs.map((r) => r.chunkLagP50Ms)),
    chunkLagP99Ms: medianOrNull(runs.map((r) => r.chunkLagP99Ms)),
    relayCpuSeconds: perProcess(runs, (r) => r.relayCpuSeconds, median),
    cpuPerMillionChunks: perProcess(runs, (r) => r.cpuPerMillionChunks, median),
    relayPeakRssMiB: perProcess(
      runs,
      (r) => r.relayPeakRssMiB,
      (xs) => Math.max(...xs),
    ),
    cpuSecondsPerMillionChunks: medianOrNull(runs.map((r) => r.cpuSecondsPerMillionChunks)),
  };
}
