/**
 * The benchmark (`npm run bench`): one run measures, side by side on this
 * machine with the same simulated engine,
 *   direct   the client straight to the engine
 *   nginx    through nginx as a streaming reverse proxy (proxy_buffering off)
 *   xim      through `xim router` and a node, CURVE on
 *   xim-nocurve  the same with CURVE off (prices the encryption)
 * for two engine timings (zero inter-token latency: the relay's ceiling;
 * and a realistic one), at 1, 64, 256 and 1024 concurrent streams. It
 * prints a table with ratios to direct and to nginx and writes
 * bench/results.json. On a 2-core machine the client, the engine and the
 * relay share the cores, so CPU per chunk and latency at one stream are
 * the fair figures; throughput at high concurrency mostly shows who leaves
 * the engine and the client more CPU.
 *   node bench/run.ts [--quick] [--repeat N] [--levels 1,64,256,1024] [--paths direct,nginx,xim,xim-nocurve]
 */
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import net from "node:net";
import { cpus, tmpdir } from "node:os";
import { join } from "node:path";
import { parseArgs } from "node:util";
import { type LoadResult, percentile, runLoad } from "./lib/load.ts";
import { startNginx } from "./lib/nginx.ts";
import { delta, type ProcSample, sampleProcess } from "./lib/proc-stats.ts";
import { jsonLine, ROOT, startXim } from "./lib/procs.ts";
import { type SimTiming, startXimStack } from "./lib/xim-stack.ts";

const { values: flags } = parseArgs({
  options: {
    quick: { type: "boolean", default: false },
    repeat: { type: "string", default: "1" },
    levels: { type: "string" },
    paths: { type: "string" },
    nginx: { type: "string", default: "/usr/sbin/nginx" },
    out: { type: "string", default: join(ROOT, "bench", "results.json") },
  },
});

const LEVELS = (flags.levels ?? (flags.quick ? "1,64" : "1,64,256,1024")).split(",").map(Number);
const PATHS = (flags.paths ?? "direct,nginx,xim,xim-nocurve").split(",");
const SCENARIOS: Array<{ name: string; timing: SimTiming }> = [
  { name: "ceiling (ttft 0, itl 0, 64 tokens)", timing: { ttftMs: 0, itlMs: 0, outputTokens: 64 } },
  { name: "realistic (ttft 20 ms, itl 5 ms, 32 tokens)", timing: { ttftMs: 20, itlMs: 5, outputTokens: 32 } },
];
const MAX_CONCURRENT = Math.max(...LEVELS);
/** --quick runs a quarter of the requests, warm-up included. */
const SCALE = flags.quick ? 0.25 : 1;
/** Runs per cell; each figure of a cell is the median of its runs (runs on a shared VM vary by 10-20 %). */
const REPEAT = Number(flags.repeat);
if (!Number.isInteger(REPEAT) || REPEAT < 1)
  throw new Error(`--repeat takes a whole number of at least 1, not '${flags.repeat}'`);

/**
 * Requests per cell: enough that each measured run lasts seconds, not a
 * fraction of one (CPU time is read from /proc in 10 ms ticks, and a run of
 * a few hundred ms is mostly ramp-up and tail).
 */
function requestsFor(level: number, timing: SimTiming): number {
  if (level === 1) return Math.round((timing.itlMs === 0 ? 1000 : 80) * SCALE);
  return Math.max(level, Math.round(Math.max(4 * level, timing.itlMs === 0 ? 4096 : 1024) * SCALE));
}

/**
 * The warm-up before each cell: the JIT has compiled the hot path and the
 * relay's engine connections are open, so the figures are the steady state
 * a long-running relay lives in (start-up is measured apart, by
 * bench/startup.ts). At least 16 at a time, so a paced engine warms up in
 * seconds.
 */
function warmUpFor(level: number, timing: SimTiming): { concurrency: number; requests: number } {
  const requests = Math.max(timing.itlMs === 0 ? 200 : 64, 2 * level);
  return { concurrency: Math.max(level, 16), requests: Math.round(requests * SCALE) };
}

async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = net.createServer();
    s.once("error", reject);
    s.listen(0, "127.0.0.1", () => {
      const port = (s.address() as net.AddressInfo).port;
      s.close(() => resolve(port));
    });
  });
}

interface Target {
  url: string;
  headers: Record<string, string>;
  model: string;
  /** The relay's processes, whose CPU and memory are measured (none for direct). */
  pids: () => Record<string, number[]>;
  stop: () => Promise<void>;
}

const baseEnv = { PATH: process.env.PATH, HOME: process.env.HOME, NO_COLOR: "1" };

async function startEngine(timing: SimTiming) {
  const engine = startXim(
    "engine",
    [
      "engine-sim",
      "--host",
      "127.0.0.1",
      "--port",
      "0",
      "--model",
      "bench",
      "--load-time-ms",
      "0",
      "--ttft-ms",
      String(timing.ttftMs),
      "--itl-ms",
      String(timing.itlMs),
      "--output-tokens",
      String(timing.outputTokens),
      "--max-num-seqs",
      String(MAX_CONCURRENT),
    ],
    baseEnv,
  );
  const info = await jsonLine<{ port: number }>(engine, (o) => o.event === "listening");
  for (let i = 0; i < 200; i++) {
    const ok = await fetch(`http://127.0.0.1:${info.port}/health`).then(
      (r) => r.ok,
      () => false,
    );
    if (ok) break;
    await new Promise((r) => setTimeout(r, 25));
  }
  return { port: info.port, stop: () => engine.stop() };
}

async function startTarget(path: string, timing: SimTiming, enginePort: number): Promise<Target> {
  const json = { "content-type": "application/json" };
  if (path === "direct") {
    return {
      url: `http://127.0.0.1:${enginePort}/v1/chat/completions`,
      headers: json,
      model: "bench",
      pids: () => ({}),
      stop: async () => {},
    };
  }
  if (path === "nginx") {
    const dir = mkdtempSync(join(tmpdir(), "xim-bench-nginx-"));
    const port = await freePort();
    const nginx = await startNginx(flags.nginx as string, dir, port, enginePort);
    return {
      url: `http://127.0.0.1:${port}/v1/chat/completions`,
      headers: json,
      model: "bench",
      pids: () => ({ nginx: nginx.pids() }),
      stop: async () => {
        await nginx.stop();
        rmSync(dir, { recursive: true, force: true });
      },
    };
  }
  const stack = await startXimStack({ timing, curve: path === "xim", maxConcurrent: MAX_CONCURRENT });
  return {
    url: `${stack.httpUrl}/v1/chat/completions`,
    headers: { ...json, authorization: `Bearer ${stack.apiKey}` },
    model: stack.model,
    pids: () => ({ router: [stack.router.child.pid as number], node: [stack.node.child.pid as number] }),
    stop: stack.stop,
  };
}

interface Row {
  scenario: string;
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
  relayCpuSeconds: Record<string, number>;
  relayPeakRssMiB: Record<string, number>;
  cpuSecondsPerMillionChunks: number | null;
}

function sampleAll(pids: Record<string, number[]>): Record<string, ProcSample[]> {
  const out: Record<string, ProcSample[]> = {};
  for (const [name, list] of Object.entries(pids)) out[name] = list.map(sampleProcess);
  return out;
}

async function measure(
  scenario: string,
  path: string,
  target: Target,
  level: number,
  timing: SimTiming,
  warmUp = true,
): Promise<Row> {
  const body = { model: target.model, messages: [{ role: "user", content: "benchmark" }] };
  if (warmUp)
    await runLoad({
      url: target.url,
      headers: target.headers,
      body,
      ...warmUpFor(level, timing),
    });
  const pids = target.pids();
  const before = sampleAll(pids);
  const r: LoadResult = await runLoad({
    url: target.url,
    headers: target.headers,
    body,
    concurrency: level,
    requests: requestsFor(level, timing),
  });
  const after = sampleAll(pids);
  const cpu: Record<string, number> = {};
  const rss: Record<string, number> = {};
  for (const name of Object.keys(pids)) {
    const d = after[name].map((a, i) => delta(before[name][i], a));
    cpu[name] = d.reduce((s, x) => s + x.cpuSeconds, 0);
    rss[name] = Math.max(...d.map((x) => x.peakRssBytes)) / 2 ** 20;
  }
  const totalCpu = Object.values(cpu).reduce((a, b) => a + b, 0);
  const seconds = r.wallMs / 1000;
  return {
    scenario,
    path,
    concurrency: level,
    requests: r.requests,
    ok: r.ok,
    errors: r.errors,
    errorSamples: r.errorSamples,
    ttftP50Ms: percentile(r.ttftMs, 50),
    ttftP99Ms: percentile(r.ttftMs, 99),
    tokensPerSecond: (r.ok * timing.outputTokens) / seconds,
    chunksPerSecond: r.chunks / seconds,
    relayCpuSeconds: cpu,
    relayPeakRssMiB: rss,
    cpuSecondsPerMillionChunks: Object.keys(pids).length ? (totalCpu / r.chunks) * 1e6 : null,
  };
}

function median(xs: number[]): number {
  const sorted = [...xs].sort((a, b) => a - b);
  const mid = Math.floor(sorted.length / 2);
  return sorted.length % 2 ? sorted[mid] : (sorted[mid - 1] + sorted[mid]) / 2;
}

/**
 * One row for a cell run several times: the median of each figure, the
 * largest peak RSS, and every request and error counted (none is hidden
 * by a median).
 */
function combine(runs: Row[]): Row {
  if (runs.length === 1) return runs[0];
  const of = (f: (r: Row) => number) => median(runs.map(f));
  const perProcess = (f: (r: Row) => Record<string, number>, pick: (xs: number[]) => number) =>
    Object.fromEntries(Object.keys(f(runs[0])).map((k) => [k, pick(runs.map((r) => f(r)[k]))]));
  const cpu = runs[0].cpuSecondsPerMillionChunks;
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
    relayCpuSeconds: perProcess((r) => r.relayCpuSeconds, median),
    relayPeakRssMiB: perProcess(
      (r) => r.relayPeakRssMiB,
      (xs) => Math.max(...xs),
    ),
    cpuSecondsPerMillionChunks: cpu === null ? null : of((r) => r.cpuSecondsPerMillionChunks as number),
  };
}

function fmt(n: number | null | undefined, digits = 1): string {
  return n === null || n === undefined || Number.isNaN(n) ? "-" : n.toFixed(digits);
}

function table(rows: Row[]): string {
  const lines: string[] = [];
  for (const scenario of [...new Set(rows.map((r) => r.scenario))]) {
    lines.push(`\n${scenario}`);
    lines.push(
      "path          conc  ok/req      ttft p50  p99 (ms)  +p50 vs direct  tok/s     chunks/s  share direct  share nginx  CPU s/M chunks  peak RSS MiB",
    );
    const of = (path: string, c: number) =>
      rows.find((r) => r.scenario === scenario && r.path === path && r.concurrency === c);
    for (const r of rows.filter((x) => x.scenario === scenario)) {
      const direct = of("direct", r.concurrency);
      const nginx = of("nginx", r.concurrency);
      const rss = Object.entries(r.relayPeakRssMiB)
        .map(([k, v]) => `${k} ${fmt(v, 0)}`)
        .join(", ");
      lines.push(
        [
          r.path.padEnd(12),
          String(r.concurrency).padStart(5),
          `${r.ok}/${r.requests}`.padStart(10),
          fmt(r.ttftP50Ms, 2).padStart(9),
          fmt(r.ttftP99Ms, 2).padStart(8),
          (direct ? `${fmt(r.ttftP50Ms - direct.ttftP50Ms, 2)} ms` : "-").padStart(16),
          fmt(r.tokensPerSecond, 0).padStart(9),
          fmt(r.chunksPerSecond, 0).padStart(9),
          (direct ? fmt(r.tokensPerSecond / direct.tokensPerSecond, 2) : "-").padStart(13),
          (nginx ? fmt(r.tokensPerSecond / nginx.tokensPerSecond, 2) : "-").padStart(12),
          fmt(r.cpuSecondsPerMillionChunks, 2).padStart(15),
          `  ${rss || "-"}`,
        ].join(" "),
      );
    }
  }
  return lines.join("\n");
}

async function main(): Promise<void> {
  const rows: Row[] = [];
  const started = Date.now();
  for (const { name, timing } of SCENARIOS) {
    const engine = await startEngine(timing);
    try {
      for (const path of PATHS) {
        process.stderr.write(`bench: ${name}: ${path} ...\n`);
        const target = await startTarget(path, timing, engine.port);
        try {
          for (const level of LEVELS) {
            const runs: Row[] = [];
            for (let i = 0; i < REPEAT; i++)
              runs.push(await measure(name, path, target, level, timing, i === 0));
            const row = combine(runs);
            rows.push(row);
            process.stderr.write(
              `  ${path} x${level}: ${row.ok}/${row.requests} ok, ttft p50 ${fmt(row.ttftP50Ms, 2)} ms, ${fmt(row.chunksPerSecond, 0)} chunks/s${row.errors ? `, errors: ${row.errorSamples.join(" | ")}` : ""}\n`,
            );
          }
        } finally {
          await target.stop();
        }
      }
    } finally {
      await engine.stop();
    }
  }
  const held: Record<string, number> = {};
  for (const path of PATHS) {
    const clean = rows.filter((r) => r.path === path && r.errors === 0).map((r) => r.concurrency);
    held[path] = clean.length ? Math.max(...clean) : 0;
  }
  const machine = {
    cpus: cpus().length,
    cpuModel: cpus()[0]?.model,
    node: process.version,
    date: new Date().toISOString(),
  };
  writeFileSync(
    flags.out as string,
    `${JSON.stringify({ machine, levels: LEVELS, repeat: REPEAT, rows, largestConcurrencyWithoutErrors: held }, null, 2)}\n`,
  );
  process.stdout.write(
    `${table(rows)}\n\nlargest concurrency held without errors: ${Object.entries(held)
      .map(([k, v]) => `${k} ${v}`)
      .join(", ")}\n`,
  );
  process.stdout.write(
    `machine: ${machine.cpus} x ${machine.cpuModel}, ${machine.node}; ${REPEAT > 1 ? `median of ${REPEAT} runs per cell; ` : ""}${((Date.now() - started) / 1000).toFixed(0)} s; results in ${flags.out}\n`,
  );
}

await main();
