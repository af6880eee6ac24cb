/**
 * @module The CPU plan (no GPU; the Xerotier documentation's AMD CPU
 * deployment), shaped by what vLLM's CPU worker does with it
 * (research/vllm-contract-2026-12.md H1, M1): vLLM pins one OpenMP thread
 * on every CPU of a rank's `VLLM_CPU_OMP_THREADS_BIND` list, binds the
 * rank's memory to the NUMA node of the list's first CPU, overwrites
 * OMP_NUM_THREADS, splits the list on `|` per tensor-parallel rank and
 * reads `VLLM_CPU_KVCACHE_SPACE` per rank. So: one rank per NUMA node
 * (tensor parallel size = nodes used), each rank's list one logical CPU
 * per physical core of its node less one reserved core, and a KV cache
 * sized from one node's memory. On one node this is the documentation's
 * `0-{nproc-1}` / total-RAM formula. When the hyperthread siblings are
 * unknown, vLLM's own `auto` binding does the same with the reserved CPU.
 * XEROTIER_AGENT_VLLM_ENV entries override every variable here.
 */

import { formatCpuList } from "../hardware/numa.ts";
import type { Hardware, NumaNode } from "../hardware/types.ts";
import { GiB, gib, type PlanBuilder } from "./builder.ts";
import { loadedWeightBytes } from "./memory.ts";
import type { ModelInfo } from "./model-info.ts";
import type { PlanConfig } from "./plan-types.ts";
import { tensorParallelProblem } from "./tensor-parallel.ts";

/** Cores per rank kept out of the OpenMP pool (the OS, the agent, vLLM's API server process). */
export const CPU_RESERVED = 1;
export const CPU_DEFAULT_CONCURRENCY = 5;
/** Left to the OS, the agent, the Python runtime and activations: 8 GiB or 15 % of the memory, whichever is more. */
export function cpuOverheadBytes(totalBytes: number): number {
  return Math.max(8 * GiB, Math.ceil(totalBytes * 0.15));
}

export interface CpuPlan {
  /** VLLM_CPU_KVCACHE_SPACE: per rank. */
  kvCacheGiB: number | null;
}

/**
 * Tensor parallel size on the CPU: one rank per NUMA node (the largest
 * count up to the node count that shards the model), unless
 * XEROTIER_AGENT_AUTO_CONFIGURE_GPU=0 gave one. Returns null when the
 * generic rule (explicit size, else vLLM's default 1) applies.
 */
export function planCpuTensorParallel(
  b: PlanBuilder,
  hw: Hardware,
  model: ModelInfo,
  config: Pick<PlanConfig, "autoConfigureGpu" | "tensorParallelSize">,
  auto: boolean,
): number | null {
  const nodes = hw.cpu?.numa.length ?? 0;
  if (!auto || !config.autoConfigureGpu || nodes === 0) return null;
  let tp = 1;
  for (let k = 1; k <= nodes; k++) if (tensorParallelProblem(model, k) === null) tp = k;
  if (tp > 1) {
    const left =
      nodes > tp
        ? ` (${nodes - tp} node${nodes - tp > 1 ? "s" : ""} left idle: ${tensorParallelProblem(model, nodes)})`
        : "";
    b.flag(
      "--tensor-parallel-size",
      String(tp),
      `${nodes} NUMA nodes: one rank per node, so each rank's threads and memory stay on its node${left}`,
    );
  } else if (nodes > 1) {
    b.note(
      "--tensor-parallel-size",
      "1",
      `${nodes} NUMA nodes, but ${model.numAttentionHeads} attention heads do not divide by any count from 2 to ${nodes}: one rank on node ${hw.cpu?.numa[0]?.id}, the other nodes idle`,
    );
  }
  if (config.tensorParallelSize !== undefined && config.tensorParallelSize !== tp) {
    b.warn(
      `XEROTIER_AGENT_TENSOR_PARALLEL_SIZE=${config.tensorParallelSize} is ignored while XEROTIER_AGENT_AUTO_CONFIGURE_GPU is on (the planner chose ${tp}, one rank per NUMA node); set XEROTIER_AGENT_AUTO_CONFIGURE_GPU=0 to use it`,
    );
  }
  return tp;
}

/** The memory one rank may use: its node's (the smallest of the nodes used), else RAM split evenly. */
function rankMemory(
  hw: Hardware,
  ranks: NumaNode[] | null,
  tp: number,
): { bytes: number; what: string } | null {
  const nodeBytes = ranks?.map((n) => n.memoryTotalBytes);
  if (ranks && nodeBytes && nodeBytes.length > 0 && nodeBytes.every((x) => x !== null)) {
    const bytes = Math.min(...(nodeBytes as number[]));
    const node = ranks[nodeBytes.indexOf(bytes)];
    return {
      bytes,
      what:
        ranks.length > 1
          ? `NUMA node ${node.id}'s ${gib(bytes)} (the smallest used)`
          : `NUMA node ${node.id}'s ${gib(bytes)}`,
    };
  }
  const total = hw.memory.totalBytes;
  if (total === null) return null;
  const nodes = Math.max(1, hw.cpu?.numa.length ?? 1);
  const perNode = Math.max(1, Math.ceil(tp / nodes));
  const share = nodes * perNode;
  if (share === 1) return { bytes: total, what: `RAM ${gib(total)}` };
  return {
    bytes: Math.floor(total / share),
    what: `RAM ${gib(total)} / ${share} (${nodes} NUMA nodes${perNode > 1 ? `, ${perNode} ranks each` : ""}; per-node memory unreadable, assumed even)`,
  };
}

function planKvCache(
  b: PlanBuilder,
  hw: Hardware,
  model: ModelInfo,
  ranks: NumaNode[] | null,
  tp: number,
  lmcacheCpuBytes: number,
): number | null {
  const mem = rankMemory(hw, ranks, tp);
  if (mem === null) {
    b.warn(
      "total RAM is unknown (/proc/meminfo unreadable): VLLM_CPU_KVCACHE_SPACE is left to vLLM (recent releases size it from the NUMA node's memory)",
    );
    return null;
  }
  const weights = loadedWeightBytes(model, null);
  const weightsPerRank = Math.ceil(weights / tp);
  const overhead = cpuOverheadBytes(mem.bytes);
  const lmPerRank = Math.ceil(lmcacheCpuBytes / tp);
  let kv = Math.floor((mem.bytes - weightsPerRank - overhead - lmPerRank) / GiB);
  const modelShare = tp > 1 ? `model ${gib(weights)} / ${tp} ranks` : `model ${gib(weights)}`;
  if (kv < 1) {
    kv = 1;
    b.warn(
      `the model (${gib(weightsPerRank)} per rank) leaves no room for a KV cache in ${mem.what}; using 1 GiB (the Xerotier documentation: 7-8B models need ~96 GB of RAM)`,
    );
  }
  const lm = lmPerRank > 0 ? ` - LMCache ${gib(lmPerRank)}` : "";
  const bound = ranks || tp > 1 ? "; vLLM binds each rank's memory to its NUMA node" : "";
  b.setEnv(
    "VLLM_CPU_KVCACHE_SPACE",
    String(kv),
    `${tp > 1 ? "per rank: " : ""}${mem.what} - ${modelShare} - overhead ${gib(overhead)}${lm}, in whole GiB${bound}`,
  );
  const need = weightsPerRank + kv * GiB;
  const short = ranks?.find((n) => n.memoryFreeBytes !== null && n.memoryFreeBytes < need);
  if (short) {
    b.warn(
      `NUMA node ${short.id} has only ${gib(short.memoryFreeBytes as number)} free now, less than its rank's model share plus KV cache (${gib(need)}); lower VLLM_CPU_KVCACHE_SPACE through XEROTIER_AGENT_VLLM_ENV if the engine is OOM-killed`,
    );
  } else if (!short && tp === 1 && hw.memory.availableBytes !== null && hw.memory.availableBytes < need) {
    b.warn(
      `only ${gib(hw.memory.availableBytes)} of RAM is available now, less than the model plus its KV cache (${gib(need)}); lower VLLM_CPU_KVCACHE_SPACE through XEROTIER_AGENT_VLLM_ENV if the engine is OOM-killed`,
    );
  }
  return kv;
}

/** One rank's bind list: its node's one-CPU-per-core list less the reserved core(s) at the end. */
function rankList(node: NumaNode): number[] {
  const cores = node.coreCpus ?? [];
  return cores.length > CPU_RESERVED ? cores.slice(0, cores.length - CPU_RESERVED) : cores;
}

/** Each rank's CPU list, one logical CPU per physical core, when the core topology of its NUMA node is known. */
function bindRankLists(b: PlanBuilder, cpu: Hardware["cpu"], ranks: NumaNode[]): void {
  const lists = ranks.map(rankList);
  const smt = cpu && cpu.threadsPerCore > 1 ? ", hyperthread siblings left idle" : "";
  const where =
    ranks.length > 1 ? `rank i on NUMA node ${ranks.map((n) => n.id).join("/")}` : `NUMA node ${ranks[0].id}`;
  b.setEnv(
    "VLLM_CPU_OMP_THREADS_BIND",
    lists.map(formatCpuList).join("|"),
    `${where}: one logical CPU per physical core (${lists.map((l) => l.length).join("/")} threads${smt}), the last ${CPU_RESERVED} core of each left to the OS and the agent; vLLM pins one OpenMP thread per listed CPU and binds the rank's memory to the node of its first CPU${ranks.length > 1 ? "; lists joined with | per rank" : ""}`,
  );
}

/** vLLM's own binding, saying what was unknown, with the CPUs it keeps back for the OS and the agent. */
function bindAuto(b: PlanBuilder, cpu: Hardware["cpu"], ranks: NumaNode[] | null, tp: number): void {
  const why = !cpu
    ? "the CPU is unknown (no lscpu, /proc/cpuinfo unreadable)"
    : ranks
      ? "which logical CPUs are hyperthread siblings is unknown (no /sys/devices/system/cpu topology)"
      : `${tp} ranks on ${cpu.numa.length} NUMA node${cpu.numa.length > 1 ? "s" : ""}`;
  b.setEnv(
    "VLLM_CPU_OMP_THREADS_BIND",
    "auto",
    `${why}: vLLM's auto binding puts rank i on NUMA node i, one CPU per physical core`,
  );
  b.setEnv(
    "VLLM_CPU_NUM_OF_RESERVED_CPU",
    String(CPU_RESERVED),
    "one CPU per rank kept out of the OpenMP pool for the OS and the agent (vLLM reads it only in auto binding)",
  );
}

function planBinding(b: PlanBuilder, hw: Hardware, ranks: NumaNode[] | null, tp: number): void {
  if (ranks?.every((n) => n.coreCpus !== null && n.coreCpus.length > 0)) bindRankLists(b, hw.cpu, ranks);
  else bindAuto(b, hw.cpu, ranks, tp);
  b.note(
    "OMP_NUM_THREADS",
    "(not set)",
    "vLLM sets it to the size of each rank's bind list, replacing any value given",
  );
}

export function planCpu(
  b: PlanBuilder,
  hw: Hardware,
  model: ModelInfo,
  auto: boolean,
  lmcacheCpuBytes: number,
  tp = 1,
): CpuPlan {
  if (!auto) return { kvCacheGiB: null };
  const cpu = hw.cpu;
  const ranks = cpu && tp <= cpu.numa.length ? cpu.numa.slice(0, tp) : null;
  const kvCacheGiB = planKvCache(b, hw, model, ranks, tp, lmcacheCpuBytes);
  planBinding(b, hw, ranks, tp);
  b.setEnv("OMP_PROC_BIND", "TRUE", "pin OpenMP threads to their cores");
  b.setEnv("OMP_WAIT_POLICY", "PASSIVE", "idle OpenMP threads sleep instead of spinning");
  if (cpu?.avx512bf16) {
    b.flag("--dtype", "bfloat16", "the CPU has AVX512_BF16" + (cpu.avx512vnni ? " and AVX512_VNNI" : ""));
  } else if (cpu) {
    b.note("--dtype", "auto", "no AVX512_BF16 on this CPU: bfloat16 would be emulated; vLLM picks the dtype");
  }
  if (cpu && cpu.numa.length > tp) {
    b.warn(
      `${cpu.numa.length} NUMA nodes but ${tp} rank${tp > 1 ? "s" : ""}: vLLM binds each rank's threads and memory to one node, so ${cpu.numa.length - tp} node${cpu.numa.length - tp > 1 ? "s stay" : " stays"} idle`,
    );
  }
  return { kvCacheGiB };
}

/** A bind list given through XEROTIER_AGENT_VLLM_ENV must have one `|`-separated entry per rank, or vLLM's rank N fails with IndexError. */
export function checkBindList(b: PlanBuilder, env: Record<string, string>, tp: number): void {
  const bind = env.VLLM_CPU_OMP_THREADS_BIND;
  if (bind === undefined || bind === "auto" || bind === "nobind") return;
  const lists = bind.split("|").length;
  if (lists < tp) {
    b.warn(
      `VLLM_CPU_OMP_THREADS_BIND=${bind} has ${lists} list${lists > 1 ? "s" : ""} for ${tp} tensor-parallel ranks: vLLM takes rank i's CPUs from the i-th |-separated list and rank ${lists} fails with IndexError`,
    );
  }
}
