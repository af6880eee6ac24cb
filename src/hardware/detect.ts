/**
 * @module Hardware detection: runs the NVIDIA, AMD and CPU probes (each a
 * real command or file read with a timeout) and returns one `Hardware`
 * record. Nothing here throws for a missing or broken tool: that is a
 * finding. PATH, the /proc root and /dev/shm are injectable for tests.
 */

import { probeAmd } from "./amd.ts";
import { probeCpu } from "./cpu.ts";
import { probeNvidia } from "./nvidia.ts";
import type { Env } from "./run-tool.ts";
import type { Hardware } from "./types.ts";

export type { Cpu, Finding, Gpu, Hardware, Memory, MigSlice, NumaNode, Topology } from "./types.ts";
export { HardwareSchema } from "./types.ts";

export interface DetectOptions {
  /** Environment of the probes: PATH, CUDA_VISIBLE_DEVICES, HIP_VISIBLE_DEVICES ... (default process.env). */
  env?: Env;
  /** Where /proc is (default "/proc"). */
  procRoot?: string;
  /** Where sysfs is (default "/sys": NUMA nodes, their memory, hyperthread siblings). */
  sysRoot?: string;
  /** The shared-memory mount to measure (default "/dev/shm"). */
  shmPath?: string;
  /** Timeout of each probe command (default 10 s: nvidia-smi can take seconds on a big box). */
  timeoutMs?: number;
  /** Skip the GPU probes (a CPU-only plan, or a doctor check that only wants the CPU). */
  skipGpu?: boolean;
}

export async function detectHardware(opts: DetectOptions = {}): Promise<Hardware> {
  const env = opts.env ?? process.env;
  const timeoutMs = opts.timeoutMs ?? 10_000;
  const cpuProbe = probeCpu({
    env,
    timeoutMs,
    procRoot: opts.procRoot ?? "/proc",
    sysRoot: opts.sysRoot ?? "/sys",
    shmPath: opts.shmPath ?? "/dev/shm",
  });
  const nvidia = opts.skipGpu ? null : await probeNvidia(env, timeoutMs);
  // The AMD tools are asked only when no NVIDIA GPU is usable: on an NVIDIA host their absence is not news.
  const amd = opts.skipGpu || (nvidia && nvidia.gpus.length > 0) ? null : await probeAmd(env, timeoutMs);
  const cpu = await cpuProbe;
  const findings = [...(nvidia?.findings ?? []), ...(amd?.findings ?? []), ...cpu.findings];
  if (nvidia && nvidia.gpus.length > 0) {
    return {
      accelerator: "nvidia",
      gpus: nvidia.gpus,
      topology: nvidia.topology,
      cpu: cpu.cpu,
      memory: cpu.memory,
      findings,
    };
  }
  if (amd && amd.gpus.length > 0) {
    return {
      accelerator: "amd",
      gpus: amd.gpus,
      topology: amd.topology,
      cpu: cpu.cpu,
      memory: cpu.memory,
      findings,
    };
  }
  findings.push({
    source: "detect",
    severity: "info",
    message: "no usable GPU: the engine will run on the CPU",
  });
  return {
    accelerator: "cpu",
    gpus: [],
    topology: { kind: "single", links: [], detail: "no GPU" },
    cpu: cpu.cpu,
    memory: cpu.memory,
    findings,
  };
}
