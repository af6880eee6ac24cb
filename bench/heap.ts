/**
 * Where the node's memory goes with many streams open
 * (`node bench/heap.ts [--streams 1024] [--requests 4096]`): a router and a
 * node as in the benchmark (bench/lib/xim-stack.ts, realistic pacing, so
 * every stream stays open about 200 ms), the load at that concurrency, and
 * halfway through a heap snapshot of the node (Node's
 * --heapsnapshot-signal) beside its /proc memory. Prints the node's peak
 * RSS, its memory by kind (/proc/PID/smaps_rollup) and the snapshot's
 * largest object kinds by retained self size, and keeps the snapshot for
 * Chrome DevTools (Memory tab).
 */
import { mkdtempSync, readdirSync, readFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { parseArgs } from "node:util";
import { runLoad } from "./lib/load.ts";
import { startXimStack } from "./lib/xim-stack.ts";

const { values: flags } = parseArgs({
  options: {
    streams: { type: "string", default: "1024" },
    requests: { type: "string", default: "4096" },
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

async function main(): Promise<void> {
  const dir = mkdtempSync(join(tmpdir(), "xim-heap-"));
  process.env.XIM_BENCH_NODE_OPTIONS = `--heapsnapshot-signal=SIGUSR2 --diagnostic-dir=${dir}`;
  const stack = await startXimStack({
    timing: { ttftMs: 20, itlMs: 5, outputTokens: 32 },
    curve: true,
    maxConcurrent: STREAMS,
  });
  const nodePid = stack.node.child.pid as number;
  try {
    const body = { model: stack.model, messages: [{ role: "user", content: "benchmark" }] };
    const load = {
      url: `${stack.httpUrl}/v1/chat/completions`,
      headers: { authorization: `Bearer ${stack.apiKey}` },
      body,
    };
    await runLoad({ ...load, concurrency: STREAMS, requests: 2 * STREAMS }); // warm-up
    const running = runLoad({ ...load, concurrency: STREAMS, requests: REQUESTS });
    await new Promise((r) => setTimeout(r, 2000)); // well into the run: every stream open
    const during = procMemory(nodePid);
    process.kill(nodePid, "SIGUSR2");
    const result = await running;
    process.stdout.write(
      `load: ${result.ok}/${result.requests} ok\nnode during the load: ${during}\nnode after: ${procMemory(nodePid)}\n`,
    );
  } finally {
    await stack.stop();
  }
  const file = readdirSync(dir).find((f) => f.endsWith(".heapsnapshot"));
  if (!file) throw new Error(`the node wrote no heap snapshot in ${dir}`);
  const rows = bySize(join(dir, file));
  const total = rows.reduce((n, r) => n + r.bytes, 0);
  process.stdout.write(`heap snapshot ${join(dir, file)}: ${(total / 2 ** 20).toFixed(1)} MiB of objects\n`);
  for (const r of rows.slice(0, 25))
    process.stdout.write(
      `${(r.bytes / 2 ** 20).toFixed(2).padStart(8)} MiB ${String(r.count).padStart(8)}  ${r.kind}\n`,
    );
}

await main();
