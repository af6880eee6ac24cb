/**
 * The benchmark (`npm run bench`): one run measures, side by side on this
 * machine with the same simulated engine,
 *   direct   the client straight to the engine
 *   nginx    through nginx as a streaming reverse proxy (proxy_buffering off)
 *   xim      through `xim router` and a node, CURVE on
 *   xim-nocurve  the same with CURVE off (prices the encryption)
 * for three scenarios (zero inter-token latency: the relay's ceiling; a
 * realistic pacing; a 256 KiB prompt: the request path) at 1, 64, 256 and
 * 1024 concurrent streams (the prompt at 1 and 64). It prints a table with
 * ratios to direct and to nginx, the chunk lag (the buffering tripwire) and
 * CPU per chunk per relay process, and writes bench/results.json. With
 * --pin it runs everything twice: as before (client, engine and relay
 * share every CPU), then with the relay on CPUs of its own and the client
 * and the engine on the others (bench/lib/pin.ts), and checks the issue's
 * targets on the pinned run.
 *   node bench/run.ts [--quick] [--pin [--relay-cpus 1]] [--repeat N] [--levels 1,64,256,1024]
 *                     [--paths direct,nginx,xim,xim-nocurve] [--scenarios ceiling,realistic,prompt]
 */
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import net from "node:net";
import { cpus, tmpdir } from "node:os";
import { join } from "node:path";
import { parseArgs } from "node:util";
import { type LoadResult, percentile, runLoad } from "./lib/load.ts";
import { startNginx } from "./lib/nginx.ts";
import { allCpus, type Pinning, pinProcess, planPinning } from "./lib/pin.ts";
import { delta, type ProcSample, sampleProcess } from "./lib/proc-stats.ts";
import { jsonLine, ROOT, startXim } from "./lib/procs.ts";
import { checkTargets, tables, targetsTable } from "./lib/report.ts";
import { combine, type Row } from "./lib/row.ts";
import { type SimTiming, startXimStack } from "./lib/xim-stack.ts";

const { values: flags } = parseArgs({
  options: {
    quick: { type: "boolean", default: false },
    pin: { type: "boolean", default: false },
    "relay-cpus": { type: "string" },
    repeat: { type: "string", default: "1" },
    levels: { type: "string" },
    paths: { type: "string" },
    scenarios: { type: "string", default: "ceiling,realistic,prompt" },
    nginx: { type: "string", default: "/usr/sbin/nginx" },
    out: { type: "string", default: join(ROOT, "bench", "results.json") },
  },
});

const LEVELS = (flags.levels ?? (flags.quick ? "1,64" : "1,64,256,1024")).split(",").map(Number);
const PATHS = (flags.paths ?? "direct,nginx,xim,xim-nocurve").split(",");
/** The request path: a prompt of this size (llm-d's gateway measured 158 ms TTFT with 220 KB prompts). */
const PROMPT_BYTES = 256 * 1024;

interface Scenario {
  key: string;
  name: string;
  timing: SimTiming;
  levels: number[];
  /** The user message's size in bytes (a short one when absent). */
  promptBytes?: number;
  /** Measured requests at a concurrency, before --quick's scaling. */
  requests: (level: number) => number;
}

/**
 * Requests per cell: enough that each measured run lasts seconds, not a
 * fraction of one (CPU time is read from /proc in 10 ms ticks, and a run of
 * a few hundred ms is mostly ramp-up and tail).
 */
const ALL_SCENARIOS: Scenario[] = [
  {
    key: "ceiling",
    name: "ceiling (ttft 0, itl 0, 64 tokens)",
    timing: { ttftMs: 0, itlMs: 0, outputTokens: 64 },
    levels: LEVELS,
    requests: (level) => (level === 1 ? 1000 : Math.max(4 * level, 4096)),
  },
  {
    key: "realistic",
    name: "realistic (ttft 20 ms, itl 5 ms, 32 tokens)",
    timing: { ttftMs: 20, itlMs: 5, outputTokens: 32 },
    levels: LEVELS,
    requests: (level) => (level === 1 ? 80 : Math.max(4 * level, 1024)),
  },
  {
    key: "prompt",
    name: "prompt 256 KiB (ttft 0, itl 0, 16 tokens)",
    timing: { ttftMs: 0, itlMs: 0, outputTokens: 16 },
    levels: LEVELS.filter((l) => l === 1 || l === 64),
    promptBytes: PROMPT_BYTES,
    requests: (level) => (level === 1 ? 200 : 1024),
  },
];
const SCENARIOS = ALL_SCENARIOS.filter((s) => (flags.scenarios as string).split(",").includes(s.key));

const MAX_CONCURRENT = Math.max(...LEVELS);
/** --quick runs a quarter of the requests, warm-up included. */
const SCALE = flags.quick ? 0.25 : 1;
/** Runs per cell; each figure of a cell is the median of its runs (runs on a shared VM vary by 10-20 %). */
const REPEAT = Number(flags.repeat);
if (!Number.isInteger(REPEAT) || REPEAT < 1)
  throw new Error(`--repeat takes a whole number of at least 1, not '${flags.repeat}'`);
const PINNING: Pinning | undefined = flags.pin ? planPinning(flags["relay-cpus"]) : undefined;
/** The engine's options besides its timing: room for the big prompt, and a stamp on each event (chunk lag). */
const ENGINE_EXTRA = ["--max-model-len", "262144", "--stamp-chunks"];

function requestsFor(s: Scenario, level: number): number {
  return Math.max(level, Math.round(s.requests(level) * SCALE));
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

function engineArgs(timing: SimTiming): string[] {
  return [
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
  ];
}

async function startEngine(timing: SimTiming, pin: Pinning | undefined) {
  const args = ["engine-sim", "--host", "127.0.0.1", "--port", "0", "--model", "bench"];
  const engine = startXim("engine", [...args, ...engineArgs(timing), ...ENGINE_EXTRA], baseEnv, pin?.load);
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

async function startNginxTarget(enginePort: number, pin: Pinning | undefined): Promise<Target> {
  const dir = mkdtempSync(join(tmpdir(), "xim-bench-nginx-"));
  const port = await freePort();
  const nginx = await startNginx(flags.nginx as string, dir, port, enginePort, pin?.relay);
  return {
    url: `http://127.0.0.1:${port}/v1/chat/completions`,
    headers: { "content-type": "application/json" },
    model: "bench",
    pids: () => ({ nginx: nginx.pids() }),
    stop: async () => {
      await nginx.stop();
      rmSync(dir, { recursive: true, force: true });
    },
  };
}

async function startTarget(
  path: string,
  timing: SimTiming,
  enginePort: number,
  pin: Pinning | undefined,
): Promise<Target> {
  if (path === "direct") {
    return {
      url: `http://127.0.0.1:${enginePort}/v1/chat/completions`,
      headers: { "content-type": "application/json" },
      model: "bench",
      pids: () => ({}),
      stop: async () => {},
    };
  }
  if (path === "nginx") return startNginxTarget(enginePort, pin);
  const stack = await startXimStack({
    timing,
    curve: path === "xim",
    maxConcurrent: MAX_CONCURRENT,
    engineArgs: ENGINE_EXTRA,
    pin,
  });
  return {
    url: `${stack.httpUrl}/v1/chat/completions`,
    headers: { "content-type": "application/json", authorization: `Bearer ${stack.apiKey}` },
    model: stack.model,
    pids: () => ({ router: [stack.router.child.pid as number], node: [stack.node.child.pid as number] }),
    stop: stack.stop,
  };
}

function sampleAll(pids: Record<string, number[]>): Record<string, ProcSample[]> {
  const out: Record<string, ProcSample[]> = {};
  for (const [name, list] of Object.entries(pids)) out[name] = list.map(sampleProcess);
  return out;
}

/** A user message of about `bytes` bytes of words (the engine counts words as tokens). */
function promptOf(bytes: number | undefined): string {
  if (bytes === undefined) return "benchmark";
  const words = "the river runs past the old mill and under the stone bridge toward the sea ";
  return words.repeat(Math.ceil(bytes / words.length)).slice(0, bytes);
}

/** The relay's CPU and peak RSS over a run, per process name. */
function relayUsage(before: Record<string, ProcSample[]>, after: Record<string, ProcSample[]>) {
  const cpu: Record<string, number> = {};
  const rss: Record<string, number> = {};
  for (const name of Object.keys(before)) {
    const d = after[name].map((a, i) => delta(before[name][i], a));
    cpu[name] = d.reduce((s, x) => s + x.cpuSeconds, 0);
    rss[name] = Math.max(...d.map((x) => x.peakRssBytes)) / 2 ** 20;
  }
  return { cpu, rss };
}

async function measure(
  s: Scenario,
  path: string,
  target: Target,
  level: number,
  o: { warmUp: boolean; pinned: boolean },
): Promise<Row> {
  const body = { model: target.model, messages: [{ role: "user", content: promptOf(s.promptBytes) }] };
  const load = { url: target.url, headers: target.headers, body, stamped: true };
  if (o.warmUp) await runLoad({ ...load, ...warmUpFor(level, s.timing) });
  const pids = target.pids();
  const before = sampleAll(pids);
  const r: LoadResult = await runLoad({ ...load, concurrency: level, requests: requestsFor(s, level) });
  const { cpu, rss } = relayUsage(before, sampleAll(pids));
  const totalCpu = Object.values(cpu).reduce((a, b) => a + b, 0);
  const seconds = r.wallMs / 1000;
  const lag = (p: number) => (r.chunkLagMs.length ? percentile(r.chunkLagMs, p) : null);
  return {
    scenario: s.name,
    pinned: o.pinned,
    path,
    concurrency: level,
    requests: r.requests,
    ok: r.ok,
    errors: r.errors,
    errorSamples: r.errorSamples,
    ttftP50Ms: percentile(r.ttftMs, 50),
    ttftP99Ms: percentile(r.ttftMs, 99),
    tokensPerSecond: (r.ok * s.timing.outputTokens) / seconds,
    chunksPerSecond: r.chunks / seconds,
    chunkLagP50Ms: lag(50),
    chunkLagP99Ms: lag(99),
    relayCpuSeconds: cpu,
    cpuPerMillionChunks: Object.fromEntries(Object.entries(cpu).map(([k, v]) => [k, (v / r.chunks) * 1e6])),
    relayPeakRssMiB: rss,
    cpuSecondsPerMillionChunks: Object.keys(pids).length ? (totalCpu / r.chunks) * 1e6 : null,
  };
}

async function runPath(
  s: Scenario,
  path: string,
  enginePort: number,
  pin: Pinning | undefined,
): Promise<Row[]> {
  const rows: Row[] = [];
  process.stderr.write(`bench: ${s.name}${pin ? ", pinned" : ""}: ${path} ...\n`);
  const target = await startTarget(path, s.timing, enginePort, pin);
  try {
    for (const level of s.levels) {
      const runs: Row[] = [];
      for (let i = 0; i < REPEAT; i++)
        runs.push(await measure(s, path, target, level, { warmUp: i === 0, pinned: pin !== undefined }));
      const row = combine(runs);
      rows.push(row);
      process.stderr.write(
        `  ${path} x${level}: ${row.ok}/${row.requests} ok, ttft p50 ${row.ttftP50Ms.toFixed(2)} ms, ${row.chunksPerSecond.toFixed(0)} chunks/s${row.errors ? `, errors: ${row.errorSamples.join(" | ")}` : ""}\n`,
      );
    }
  } finally {
    await target.stop();
  }
  return rows;
}

/** Every scenario and path, pinned or not (this process, the client, moves to the load's CPUs when pinned). */
async function pass(pin: Pinning | undefined): Promise<Row[]> {
  // Only a --pin run moves the client (and needs taskset): to the load's CPUs, then back to all.
  if (PINNING) pinProcess(process.pid, pin?.load ?? allCpus());
  const rows: Row[] = [];
  for (const s of SCENARIOS) {
    if (s.levels.length === 0) continue;
    const engine = await startEngine(s.timing, pin);
    try {
      for (const path of PATHS) rows.push(...(await runPath(s, path, engine.port, pin)));
    } finally {
      await engine.stop();
    }
  }
  return rows;
}

function largestHeld(rows: Row[]): Record<string, number> {
  const held: Record<string, number> = {};
  for (const path of PATHS) {
    const clean = rows.filter((r) => r.path === path && r.errors === 0).map((r) => r.concurrency);
    held[path] = clean.length ? Math.max(...clean) : 0;
  }
  return held;
}

async function main(): Promise<void> {
  const started = Date.now();
  const rows = await pass(undefined);
  if (PINNING) rows.push(...(await pass(PINNING)));
  const held = largestHeld(rows);
  const checked = PINNING ? rows.filter((r) => r.pinned) : rows;
  const targets = checkTargets(checked);
  const machine = {
    cpus: cpus().length,
    cpuModel: cpus()[0]?.model,
    node: process.version,
    date: new Date().toISOString(),
    pinning: PINNING ?? null,
  };
  writeFileSync(
    flags.out as string,
    `${JSON.stringify({ machine, levels: LEVELS, repeat: REPEAT, rows, targets, largestConcurrencyWithoutErrors: held }, null, 2)}\n`,
  );
  const pinNote = PINNING
    ? `pinned pass: relay on CPU ${PINNING.relay}, client and engine on CPU ${PINNING.load}; `
    : "";
  process.stdout.write(
    `${tables(rows)}\n${targetsTable(targets, PINNING ? "pinned run" : "unpinned run: pass --pin for the production figures")}\n\n` +
      `largest concurrency held without errors: ${Object.entries(held)
        .map(([k, v]) => `${k} ${v}`)
        .join(", ")}\n` +
      `machine: ${machine.cpus} x ${machine.cpuModel}, ${machine.node}; ${pinNote}${REPEAT > 1 ? `median of ${REPEAT} runs per cell; ` : ""}${((Date.now() - started) / 1000).toFixed(0)} s; results in ${flags.out}\n`,
  );
}

await main();
