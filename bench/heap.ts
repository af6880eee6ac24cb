/**
 * Where the node's memory goes with many streams open
 * (`node bench/heap.ts [--streams 1024] [--requests 4096] [--budget-kib 24]`): a router and a
 * node as in the benchmark (bench/lib/xim-stack.ts, realistic pacing, so
 * every stream stays open about 200 ms), the load at that concurrency, and
 * heap snapshots of the node (Node's --heapsnapshot-signal), one idle after
 * the warm-up and one halfway through the load, beside its /proc memory
 * and V8's heap spaces. Prints what grew per open stream by object kind,
 * fails (exit 1) when the live objects per stream exceed the budget, and
 * keeps the snapshots for Chrome DevTools (Memory tab).
 */
import { mkdtempSync, readdirSync, readFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { parseArgs } from "node:util";
import { findFreePort } from "../src/engine/free-port.ts";
import { runLoad } from "./lib/load.ts";
import { startXimStack } from "./lib/xim-stack.ts";

/**
 * The node's own live objects per open stream, at most (docs/operations.md,
 * "Memory per stream"): measured 13.9-15.5 KiB at 1024 streams (2026-12-07);
 * the bytes a stream holds (its credit window and one engine read) come on
 * top and are bounded by flow control, not counted here.
 */
const STREAM_BUDGET_KIB = 24;

/**
 * The kinds that are bytes in flight, not the node's own objects: buffers'
 * data and their wrappers. How many a snapshot catches depends on the
 * moment (19-31 thousand at 1024 streams in five runs of the same build),
 * which made the budget check fail or pass by chance when they counted.
 */
const HELD_BYTES = new Set([
  "(native) system / JSArrayBufferData",
  "(object) ArrayBuffer",
  "(object) Buffer",
  "(object) Uint8Array",
]);

const { values: flags } = parseArgs({
  options: {
    streams: { type: "string", default: "1024" },
    requests: { type: "string", default: "4096" },
    "budget-kib": { type: "string", default: String(STREAM_BUDGET_KIB) },
  },
});
const STREAMS = Number(flags.streams);
const REQUESTS = Number(flags.requests);

interface Snapshot {
  snapshot: { meta: { node_fields: string[]; node_types: [string[]] } };
  nodes: number[];
  strings: string[];
}

/** Self size by object kind ("(type) name"), largest first. */
function bySize(file: string): Array<{ kind: string; count: number; bytes: number }> {
  const s = JSON.parse(readFileSync(file, "utf8")) as Snapshot;
  const fields = s.snapshot.meta.node_fields;
  const types = s.snapshot.meta.node_types[0];
  const [typeAt, nameAt, sizeAt] = ["type", "name", "self_size"].map((f) => fields.indexOf(f));
  const totals = new Map<string, { count: number; bytes: number }>();
  for (let i = 0; i < s.nodes.length; i += fields.length) {
    const type = types[s.nodes[i + typeAt]];
    const name =
      type === "object" || type === "closure" || type === "native" ? s.strings[s.nodes[i + nameAt]] : "";
    const kind = `(${type}) ${name}`.trim();
    const t = totals.get(kind) ?? { count: 0, bytes: 0 };
    t.count++;
    t.bytes += s.nodes[i + sizeAt];
    totals.set(kind, t);
  }
  return [...totals].map(([kind, t]) => ({ kind, ...t })).sort((a, b) => b.bytes - a.bytes);
}

function procMemory(pid: number): string {
  const hwm = /VmHWM:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, "utf8"))?.[1];
  const rollup = readFileSync(`/proc/${pid}/smaps_rollup`, "utf8")
    .split("\n")
    .filter((l) => /^(Rss|Anonymous|Private_Dirty|Shared_Clean):/.test(l))
    .join("; ");
  return `peak RSS ${(Number(hwm) / 1024).toFixed(0)} MiB; ${rollup.replace(/\s+/g, " ")}`;
}

/** The node's V8 heap and external memory, from its own /metrics (prom-client's nodejs_* gauges). */
async function v8Memory(port: number): Promise<string> {
  const text = await (await fetch(`http://127.0.0.1:${port}/metrics`)).text();
  const pick =
    /^xim_node_nodejs_(heap_size_total_bytes|heap_size_used_bytes|external_memory_bytes|heap_space_size_used_bytes\{space="(?:new|old)"\}|heap_space_size_total_bytes\{space="(?:new|old)"\}) (\d+)/gm;
  return [...text.matchAll(pick)].map((m) => `${m[1]} ${(Number(m[2]) / 2 ** 20).toFixed(1)} MiB`).join("; ");
}

/** Signal the node to write a heap snapshot and wait for the file (Node writes it synchronously, seconds for a big heap). */
async function snapshot(pid: number, dir: string, count: number): Promise<string> {
  process.kill(pid, "SIGUSR2");
  for (let i = 0; i < 600; i++) {
    const files = readdirSync(dir)
      .filter((f) => f.endsWith(".heapsnapshot"))
      .sort();
    if (files.length === count) return join(dir, files[count - 1]);
    await new Promise((r) => setTimeout(r, 100));
  }
  throw new Error(`the node wrote no heap snapshot in ${dir}`);
}

function print(title: string, rows: Array<{ kind: string; count: number; bytes: number }>): void {
  process.stdout.write(`${title}\n`);
  for (const r of rows.slice(0, 20))
    process.stdout.write(
      `${(r.bytes / 2 ** 20).toFixed(2).padStart(8)} MiB ${String(r.count).padStart(8)}  ${r.kind}\n`,
    );
}

/** What grew from the idle snapshot to the loaded one, by kind, largest first. */
function growth(idle: ReturnType<typeof bySize>, loaded: ReturnType<typeof bySize>) {
  const before = new Map(idle.map((r) => [r.kind, r]));
  return loaded
    .map((r) => ({
      kind: r.kind,
      count: r.count - (before.get(r.kind)?.count ?? 0),
      bytes: r.bytes - (before.get(r.kind)?.bytes ?? 0),
    }))
    .sort((a, b) => b.bytes - a.bytes);
}

async function main(): Promise<void> {
  const dir = mkdtempSync(join(tmpdir(), "xim-heap-"));
  // More V8 options for an A/B (e.g. --max-semi-space-size=8) come from XIM_BENCH_NODE_OPTIONS.
  process.env.XIM_BENCH_NODE_OPTIONS = `--heapsnapshot-signal=SIGUSR2 --diagnostic-dir=${dir} ${process.env.XIM_BENCH_NODE_OPTIONS ?? ""}`;
  const metricsPort = await findFreePort();
  const stack = await startXimStack({
    timing: { ttftMs: 20, itlMs: 5, outputTokens: 32 },
    curve: true,
    maxConcurrent: STREAMS,
    nodeEnv: { XEROTIER_AGENT_DISABLE_METRICS_SERVER: "0", XEROTIER_AGENT_METRICS_PORT: String(metricsPort) },
  });
  const nodePid = stack.node.child.pid as number;
  let files: string[];
  try {
    const body = { model: stack.model, messages: [{ role: "user", content: "benchmark" }] };
    const load = {
      url: `${stack.httpUrl}/v1/chat/completions`,
      headers: { authorization: `Bearer ${stack.apiKey}` },
      body,
    };
    await runLoad({ ...load, concurrency: STREAMS, requests: 2 * STREAMS }); // warm-up
    await new Promise((r) => setTimeout(r, 1000)); // every stream ended
    process.stdout.write(`node idle after the warm-up: ${procMemory(nodePid)}\n`);
    const idle = await snapshot(nodePid, dir, 1);
    const running = runLoad({ ...load, concurrency: STREAMS, requests: REQUESTS });
    await new Promise((r) => setTimeout(r, 2000)); // well into the run: every stream open
    process.stdout.write(`node during the load: ${procMemory(nodePid)}\n  ${await v8Memory(metricsPort)}\n`);
    const loaded = await snapshot(nodePid, dir, 2);
    const result = await running;
    process.stdout.write(`load: ${result.ok}/${result.requests} ok\n`);
    files = [idle, loaded];
  } finally {
    await stack.stop();
  }
  const [idle, loaded] = files.map(bySize);
  const grown = growth(idle, loaded);
  const total = (rows: typeof idle) => rows.reduce((n, r) => n + r.bytes, 0);
  const held = grown.filter((r) => HELD_BYTES.has(r.kind));
  const perStreamKiB = (total(grown) - total(held)) / STREAMS / 1024;
  const buffers = held.find((r) => r.kind === "(native) system / JSArrayBufferData")?.count ?? 0;
  process.stdout.write(
    `live objects: idle ${(total(idle) / 2 ** 20).toFixed(1)} MiB, ${STREAMS} streams ${(total(loaded) / 2 ** 20).toFixed(1)} MiB (snapshots: ${files.join(", ")})\n` +
      `  the node's own objects: ${perStreamKiB.toFixed(1)} KiB per stream\n` +
      `  bytes in flight (buffers and their wrappers, bounded by flow control): ${(total(held) / STREAMS / 1024).toFixed(1)} KiB per stream in ${(buffers / STREAMS).toFixed(1)} buffers\n`,
  );
  print(`grown with ${STREAMS} streams open:`, grown);
  print("the loaded heap:", loaded);
  const budget = Number(flags["budget-kib"]);
  if (perStreamKiB > budget) {
    process.stdout.write(`OVER BUDGET: ${perStreamKiB.toFixed(1)} KiB per stream, budget ${budget} KiB\n`);
    process.exitCode = 1;
  } else process.stdout.write(`within the budget of ${budget} KiB per stream\n`);
}

await main();
