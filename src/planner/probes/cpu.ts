/**
 * @module CPU and memory probe: `lscpu` (model, sockets, cores, threads,
 * NUMA nodes, flags), /proc/cpuinfo when lscpu is absent, /proc/meminfo
 * (total and available memory) and the size of /dev/shm. The /proc root
 * and the shm path are parameters so tests read fixtures.
 */
import { statfs } from "node:fs/promises";
import { join } from "node:path";
import { readKernelFile } from "../../core/bounded-read.ts";
import type { Cpu, Finding, Memory } from "../hardware.ts";
import { type Env, runTool } from "./exec.ts";

export interface CpuProbe {
  cpu: Cpu | null;
  memory: Memory;
  findings: Finding[];
}

function fields(text: string): Map<string, string> {
  const map = new Map<string, string>();
  for (const line of text.split("\n")) {
    const i = line.indexOf(":");
    if (i <= 0) continue;
    const key = line.slice(0, i).trim();
    if (!map.has(key)) map.set(key, line.slice(i + 1).trim());
  }
  return map;
}

function int(value: string | undefined): number | null {
  if (value === undefined) return null;
  const n = Number.parseInt(value, 10);
  return Number.isFinite(n) ? n : null;
}

/** Count the CPUs in a list such as "0-15,32-47" or "0,2,4". */
export function countCpuList(list: string): number {
  let n = 0;
  for (const part of list.split(",")) {
    const p = part.trim();
    if (!p) continue;
    const [a, b] = p.split("-").map((x) => Number.parseInt(x, 10));
    n += b === undefined ? 1 : b - a + 1;
  }
  return n;
}

function flagSet(flags: string): Pick<Cpu, "avx512f" | "avx512bf16" | "avx512vnni" | "amxBf16"> {
  const set = new Set(flags.split(/\s+/));
  return {
    avx512f: set.has("avx512f"),
    avx512bf16: set.has("avx512_bf16"),
    avx512vnni: set.has("avx512_vnni") || set.has("avx512vnni"),
    amxBf16: set.has("amx_bf16"),
  };
}

/** Parse plain `lscpu` output (util-linux 2.32 and 2.37+ layouts). */
export function parseLscpu(text: string): Cpu {
  const f = fields(text);
  const online = f.get("On-line CPU(s) list");
  const logical = online ? countCpuList(online) : (int(f.get("CPU(s)")) ?? 1);
  const threadsPerCore = int(f.get("Thread(s) per core")) ?? 1;
  const coresPerSocket = int(f.get("Core(s) per socket")) ?? int(f.get("Core(s) per cluster")) ?? logical;
  const sockets = int(f.get("Socket(s)")) ?? int(f.get("Cluster(s)")) ?? 1;
  // A NUMA node with no CPUs (POWER9 GPU memory nodes) is not a place to bind threads.
  let numa = 0;
  for (const [key, value] of f) if (/^NUMA node\d+ CPU\(s\)$/.test(key) && value) numa++;
  if (numa === 0) numa = int(f.get("NUMA node(s)")) ?? 1;
  return {
    model: f.get("Model name") ?? "unknown",
    architecture: f.get("Architecture") ?? "unknown",
    logicalCpus: logical,
    sockets,
    coresPerSocket,
    threadsPerCore,
    physicalCores: Math.max(1, Math.min(logical, sockets * coresPerSocket)),
    numaNodes: numa,
    ...flagSet(f.get("Flags") ?? ""),
  };
}

/** Parse /proc/cpuinfo (x86 layout): used when lscpu is missing. */
export function parseCpuinfo(text: string): Cpu {
  const blocks = text.split(/\n\s*\n/).filter((b) => b.trim());
  const cores = new Set<string>();
  const sockets = new Set<string>();
  let model = "unknown";
  let flags = "";
  for (const block of blocks) {
    const f = fields(block);
    model = f.get("model name") ?? f.get("cpu") ?? model;
    flags = f.get("flags") ?? flags;
    const phys = f.get("physical id") ?? "0";
    sockets.add(phys);
    cores.add(`${phys}:${f.get("core id") ?? cores.size}`);
  }
  const logical = Math.max(1, blocks.length);
  const physical = Math.max(1, cores.size);
  return {
    model,
    architecture: "unknown",
    logicalCpus: logical,
    sockets: Math.max(1, sockets.size),
    coresPerSocket: Math.max(1, Math.round(physical / Math.max(1, sockets.size))),
    threadsPerCore: Math.max(1, Math.round(logical / physical)),
    physicalCores: physical,
    numaNodes: 1,
    ...flagSet(flags),
  };
}

/** Total and available bytes from /proc/meminfo. */
export function parseMeminfo(text: string): { totalBytes: number | null; availableBytes: number | null } {
  const f = fields(text);
  const kb = (key: string) => {
    const n = int(f.get(key));
    return n === null ? null : n * 1024;
  };
  return { totalBytes: kb("MemTotal"), availableBytes: kb("MemAvailable") ?? kb("MemFree") };
}

export interface CpuProbeOptions {
  env: Env;
  procRoot: string;
  shmPath: string;
  timeoutMs: number;
}

export async function probeCpu(opts: CpuProbeOptions): Promise<CpuProbe> {
  const findings: Finding[] = [];
  let cpu: Cpu | null = null;
  const lscpu = await runTool("lscpu", [], { ...opts.env, LC_ALL: "C" }, opts.timeoutMs);
  if (lscpu.kind === "ok") {
    cpu = parseLscpu(lscpu.stdout);
  } else {
    if (lscpu.kind !== "missing") {
      findings.push({
        source: "lscpu",
        severity: "warning",
        message: `lscpu ${lscpu.kind === "timeout" ? "timed out" : "failed"}; reading /proc/cpuinfo instead`,
      });
    }
    try {
      cpu = parseCpuinfo(await readKernelFile(join(opts.procRoot, "cpuinfo")));
    } catch (err) {
      findings.push({
        source: "/proc/cpuinfo",
        severity: "warning",
        message: `cannot read the CPU description: ${(err as Error).message}`,
      });
    }
  }
  const memory: Memory = { totalBytes: null, availableBytes: null, shmBytes: null };
  try {
    Object.assign(memory, parseMeminfo(await readKernelFile(join(opts.procRoot, "meminfo"))));
  } catch (err) {
    findings.push({
      source: "/proc/meminfo",
      severity: "warning",
      message: `cannot read memory sizes: ${(err as Error).message}`,
    });
  }
  try {
    const s = await statfs(opts.shmPath);
    memory.shmBytes = s.blocks * s.bsize;
  } catch (err) {
    findings.push({
      source: "/dev/shm",
      severity: "warning",
      message: `cannot measure ${opts.shmPath}: ${(err as Error).message}`,
    });
  }
  if (memory.shmBytes !== null && memory.shmBytes < 1024 ** 3) {
    findings.push({
      source: "/dev/shm",
      severity: "warning",
      message: `${opts.shmPath} is only ${Math.round(memory.shmBytes / 2 ** 20)} MiB; vLLM's workers exchange tensors through it`,
      hint: "run the container with --ipc=host or a larger --shm-size",
    });
  }
  if (cpu && !cpu.avx512f && cpu.architecture === "x86_64") {
    findings.push({
      source: "lscpu",
      severity: "info",
      message: "the CPU has no AVX-512; vLLM's CPU backend runs much slower without it",
    });
  }
  return { cpu, memory, findings };
}
