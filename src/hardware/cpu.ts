/**
 * @module CPU and memory probe: `lscpu` (model, sockets, cores, threads,
 * NUMA nodes, flags), /proc/cpuinfo and sysfs when lscpu is absent (as
 * under `env -i`, where no PATH finds it), /proc/meminfo (total and
 * available memory), each NUMA node's CPUs, cores and memory (numa.ts) and
 * the size of /dev/shm. The /proc and /sys roots and the shm path are
 * parameters so tests read fixtures.
 */
import { statfs } from "node:fs/promises";
import { join } from "node:path";
import { readKernelFile } from "../core/bounded-read.ts";
import { parseCpuList, sysfsNodes, withSysfsDetail } from "./numa.ts";
import { type Env, runTool } from "./run-tool.ts";
import type { Cpu, Finding, Memory, NumaNode } from "./types.ts";

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
  const nodes: NumaNode[] = [];
  for (const [key, value] of f) {
    const id = /^NUMA node(\d+) CPU\(s\)$/.exec(key)?.[1];
    const cpus = id === undefined ? [] : parseCpuList(value);
    if (id !== undefined && cpus.length > 0) nodes.push(numaNode(Number(id), cpus, threadsPerCore));
  }
  const numa = nodes.length > 0 ? nodes.length : (int(f.get("NUMA node(s)")) ?? 1);
  if (nodes.length === 0)
    nodes.push(numaNode(0, online ? parseCpuList(online) : range(logical), threadsPerCore));
  return {
    model: f.get("Model name") ?? "unknown",
    architecture: f.get("Architecture") ?? "unknown",
    logicalCpus: logical,
    sockets,
    coresPerSocket,
    threadsPerCore,
    physicalCores: Math.max(1, Math.min(logical, sockets * coresPerSocket)),
    numaNodes: numa,
    numa: nodes,
    ...flagSet(f.get("Flags") ?? ""),
  };
}

function range(n: number): number[] {
  return Array.from({ length: n }, (_, i) => i);
}

/** Without hyperthreads every logical CPU is a core; with them, sysfs must say which are siblings. */
function numaNode(id: number, cpus: number[], threadsPerCore: number): NumaNode {
  return {
    id,
    cpus,
    coreCpus: threadsPerCore === 1 ? cpus : null,
    memoryTotalBytes: null,
    memoryFreeBytes: null,
  };
}

/** The architecture /proc/cpuinfo implies (it has no such line): x86 says "vendor_id", Arm "CPU implementer", POWER "cpu : POWERn". */
function cpuinfoArchitecture(f: Map<string, string>): string {
  if (f.has("vendor_id")) return /\blm\b/.test(f.get("flags") ?? "") ? "x86_64" : "i686";
  if (f.has("CPU implementer")) return "aarch64";
  if (/POWER/i.test(f.get("cpu") ?? "")) return "ppc64le";
  return "unknown";
}

/** Parse /proc/cpuinfo (x86 layout): used when lscpu is missing. */
export function parseCpuinfo(text: string): Cpu {
  const blocks = text.split(/\n\s*\n/).filter((b) => b.trim());
  const cores = new Set<string>();
  const sockets = new Set<string>();
  const firstOfCore: number[] = [];
  const ids: number[] = [];
  let model = "unknown";
  let flags = "";
  let architecture = "unknown";
  for (const block of blocks) {
    const f = fields(block);
    if (f.get("processor") === undefined) continue;
    model = f.get("model name") ?? f.get("cpu") ?? model;
    flags = f.get("flags") ?? flags;
    if (architecture === "unknown") architecture = cpuinfoArchitecture(f);
    const id = int(f.get("processor")) ?? ids.length;
    ids.push(id);
    const phys = f.get("physical id") ?? "0";
    sockets.add(phys);
    const core = `${phys}:${f.get("core id") ?? id}`;
    if (!cores.has(core)) firstOfCore.push(id);
    cores.add(core);
  }
  const logical = Math.max(1, ids.length);
  const physical = Math.max(1, cores.size);
  const threadsPerCore = Math.max(1, Math.round(logical / physical));
  return {
    model,
    architecture,
    logicalCpus: logical,
    sockets: Math.max(1, sockets.size),
    coresPerSocket: Math.max(1, Math.round(physical / Math.max(1, sockets.size))),
    threadsPerCore,
    physicalCores: physical,
    numaNodes: 1,
    numa: [
      {
        id: 0,
        cpus: ids.length ? ids : [0],
        coreCpus: firstOfCore.length ? firstOfCore : null,
        memoryTotalBytes: null,
        memoryFreeBytes: null,
      },
    ],
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
  /** Where sysfs is (default "/sys" in detect.ts). */
  sysRoot: string;
  shmPath: string;
  timeoutMs: number;
}

/**
 * The NUMA nodes of `cpu` with sysfs's detail. lscpu's node lists stand
 * (it read sysfs itself); without lscpu, sysfs's node folders replace
 * /proc/cpuinfo's single node.
 */
async function withNuma(cpu: Cpu, fromLscpu: boolean, sysRoot: string, findings: Finding[]): Promise<Cpu> {
  let nodes = cpu.numa;
  if (!fromLscpu) {
    const sys = await sysfsNodes(sysRoot);
    if (sys.length > 0) {
      // cpuinfo's one-per-core list still applies; keep the node's share of it.
      const cores = new Set(cpu.numa[0]?.coreCpus ?? []);
      nodes = sys.map((n) => ({ ...n, coreCpus: cores.size ? n.cpus.filter((c) => cores.has(c)) : null }));
    }
  }
  nodes = await withSysfsDetail(nodes, sysRoot);
  if (nodes.length > 1 && nodes.some((n) => n.memoryTotalBytes === null)) {
    findings.push({
      source: "/sys/devices/system/node",
      // Only the CPU plan uses it, and its KV decision says so; on a GPU host it is not news.
      severity: "info",
      message: `cannot read the memory of every NUMA node under ${join(sysRoot, "devices/system/node")}: the CPU plan assumes RAM is split evenly`,
    });
  }
  return { ...cpu, numa: nodes, numaNodes: fromLscpu ? cpu.numaNodes : Math.max(1, nodes.length) };
}

export async function probeCpu(opts: CpuProbeOptions): Promise<CpuProbe> {
  const findings: Finding[] = [];
  let cpu: Cpu | null = null;
  const lscpu = await runTool("lscpu", [], { env: { ...opts.env, LC_ALL: "C" }, timeoutMs: opts.timeoutMs });
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
  if (cpu) cpu = await withNuma(cpu, lscpu.kind === "ok", opts.sysRoot, findings);
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
