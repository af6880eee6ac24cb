/**
 * @module The CPU plan (no GPU; the seed's AMD CPU deployment): KV cache
 * space from total RAM less the model and an overhead, OpenMP threads
 * bound to every CPU but the reserved one, one thread per physical core,
 * passive waiting, bfloat16 where AVX512_BF16 exists, and concurrency 5.
 * XEROTIER_AGENT_VLLM_ENV entries override every variable here.
 */
import { GiB, gib, type PlanBuilder } from "./builder.ts";
import type { Hardware } from "./hardware.ts";
import { loadedWeightBytes } from "./memory.ts";
import type { ModelInfo } from "./model-info.ts";

export const CPU_RESERVED = 1;
export const CPU_DEFAULT_CONCURRENCY = 5;
/** Left to the OS, the agent, the Python runtime and activations: 8 GiB or 15 % of RAM, whichever is more. */
export function cpuOverheadBytes(totalBytes: number): number {
  return Math.max(8 * GiB, Math.ceil(totalBytes * 0.15));
}

export interface CpuPlan {
  kvCacheGiB: number | null;
}

export function planCpu(
  b: PlanBuilder,
  hw: Hardware,
  model: ModelInfo,
  auto: boolean,
  lmcacheCpuBytes: number,
): CpuPlan {
  if (!auto) return { kvCacheGiB: null };
  const cpu = hw.cpu;
  const total = hw.memory.totalBytes;
  let kvCacheGiB: number | null = null;
  if (total !== null) {
    const weights = loadedWeightBytes(model, null);
    const overhead = cpuOverheadBytes(total);
    const free = total - weights - overhead - lmcacheCpuBytes;
    kvCacheGiB = Math.floor(free / GiB);
    const lm = lmcacheCpuBytes > 0 ? ` - LMCache ${gib(lmcacheCpuBytes)}` : "";
    if (kvCacheGiB < 1) {
      kvCacheGiB = 1;
      b.warn(
        `the model (${gib(weights)}) leaves no room for a KV cache in ${gib(total)} of RAM; using 1 GiB (the seed's guide: 7-8B models need ~96 GB of RAM)`,
      );
    }
    b.setEnv(
      "VLLM_CPU_KVCACHE_SPACE",
      String(kvCacheGiB),
      `RAM ${gib(total)} - model ${gib(weights)} - overhead ${gib(overhead)}${lm}, in whole GiB`,
    );
    if (hw.memory.availableBytes !== null && hw.memory.availableBytes < weights + kvCacheGiB * GiB) {
      b.warn(
        `only ${gib(hw.memory.availableBytes)} of RAM is available now, less than the model plus its KV cache (${gib(weights + kvCacheGiB * GiB)}); lower VLLM_CPU_KVCACHE_SPACE through XEROTIER_AGENT_VLLM_ENV if the engine is OOM-killed`,
      );
    }
  } else {
    b.warn(
      "total RAM is unknown (/proc/meminfo unreadable): VLLM_CPU_KVCACHE_SPACE is left to vLLM (4 GiB on v0.11)",
    );
  }
  if (cpu) {
    const last = cpu.logicalCpus - 1 - CPU_RESERVED;
    const bind = last <= 0 ? "0" : `0-${last}`;
    b.setEnv(
      "VLLM_CPU_OMP_THREADS_BIND",
      bind,
      `${cpu.logicalCpus} logical CPUs, the last ${CPU_RESERVED} left to the OS and the agent`,
    );
    b.setEnv(
      "VLLM_CPU_NUM_OF_RESERVED_CPU",
      String(CPU_RESERVED),
      "one CPU kept out of the OpenMP pool for the OS and the agent",
    );
    b.setEnv(
      "OMP_NUM_THREADS",
      String(cpu.physicalCores),
      `${cpu.physicalCores} physical cores (${cpu.sockets} socket${cpu.sockets > 1 ? "s" : ""} x ${cpu.coresPerSocket} cores${cpu.threadsPerCore > 1 ? `, ${cpu.threadsPerCore} threads each` : ""})`,
    );
  } else {
    b.warn("the CPU is unknown (no lscpu, /proc/cpuinfo unreadable): thread binding is left to vLLM");
  }
  b.setEnv("OMP_PROC_BIND", "TRUE", "pin OpenMP threads to their cores");
  b.setEnv("OMP_WAIT_POLICY", "PASSIVE", "idle OpenMP threads sleep instead of spinning");
  if (cpu?.avx512bf16) {
    b.flag("--dtype", "bfloat16", "the CPU has AVX512_BF16" + (cpu.avx512vnni ? " and AVX512_VNNI" : ""));
  } else if (cpu) {
    b.note("--dtype", "auto", "no AVX512_BF16 on this CPU: bfloat16 would be emulated; vLLM picks the dtype");
  }
  if (cpu && cpu.numaNodes > 1) {
    b.note(
      "NUMA",
      `${cpu.numaNodes} nodes`,
      "one engine process spans the NUMA nodes; memory bandwidth across nodes limits throughput",
    );
  }
  return { kvCacheGiB };
}
