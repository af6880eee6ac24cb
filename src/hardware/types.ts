/**
 * @module The data detection produces: the GPUs, how they are linked, the
 * CPU and memory, and findings (what a probe could not do, said plainly).
 * Valibot schemas, so `xim plan --json`, `xim doctor` and tests share one
 * shape; the types are inferred from them.
 */
import * as v from "valibot";

export const FindingSchema = v.object({
  /** The probe that produced it: "nvidia-smi", "amd-smi", "rocm-smi", "lscpu", "/proc/meminfo", "/dev/shm" ... */
  source: v.string(),
  severity: v.picklist(["info", "warning", "error"]),
  message: v.string(),
  /** The concrete next step, when there is one. */
  hint: v.optional(v.string()),
});
export type Finding = v.InferOutput<typeof FindingSchema>;

export const MigSliceSchema = v.object({
  /** The profile as `nvidia-smi -L` prints it, e.g. "3g.40gb" or "1c.3g.71gb". */
  profile: v.string(),
  uuid: v.string(),
  /** Memory of the slice from its profile name (decimal GB, rounded down to MiB). */
  memoryMiB: v.number(),
});
export type MigSlice = v.InferOutput<typeof MigSliceSchema>;

export const GpuSchema = v.object({
  vendor: v.picklist(["nvidia", "amd"]),
  /** Index as the vendor tool numbers it (PCI bus order). */
  index: v.number(),
  /** The tool's name: NVML's ("NVIDIA H100 80GB HBM3") or AMD's market name. */
  name: v.string(),
  /** Memory the engine can use on this device, MiB (a MIG slice's when one is selected). */
  memoryTotalMiB: v.number(),
  /** Free memory at detection, MiB; null when the tool does not say. */
  memoryFreeMiB: v.nullable(v.number()),
  /** The whole board's memory, MiB (differs from memoryTotalMiB for a MIG slice). */
  boardMemoryMiB: v.number(),
  /** "major.minor" on NVIDIA; null on AMD or old drivers. */
  computeCapability: v.nullable(v.string()),
  driverVersion: v.nullable(v.string()),
  uuid: v.nullable(v.string()),
  /** MIG mode is on for this board (its memory.total is still the board's). */
  migEnabled: v.boolean(),
  /** The MIG slice made visible through CUDA_VISIBLE_DEVICES, if any. */
  migSlice: v.nullable(MigSliceSchema),
});
export type Gpu = v.InferOutput<typeof GpuSchema>;

export const TopologySchema = v.object({
  /**
   * nvlink: every pair of visible GPUs has NV#; pcie: none has; mixed: some;
   * xgmi: AMD Infinity Fabric; single: one GPU; unknown: not measured.
   */
  kind: v.picklist(["nvlink", "pcie", "mixed", "xgmi", "single", "unknown"]),
  /** Link of each visible pair as `nvidia-smi topo -m` names it (NV18, PIX, NODE, SYS ...), row-major. */
  links: v.array(v.array(v.string())),
  detail: v.string(),
});
export type Topology = v.InferOutput<typeof TopologySchema>;

export const NumaNodeSchema = v.object({
  /** The kernel's node number (sparse on some machines: POWER9 has 0 and 8). */
  id: v.number(),
  /** Its online logical CPUs. */
  cpus: v.array(v.number()),
  /** One logical CPU per physical core (hyperthread siblings left out); null when the siblings are unknown. */
  coreCpus: v.nullable(v.array(v.number())),
  /** From /sys/devices/system/node/nodeN/meminfo; null when unreadable. */
  memoryTotalBytes: v.nullable(v.number()),
  memoryFreeBytes: v.nullable(v.number()),
});
export type NumaNode = v.InferOutput<typeof NumaNodeSchema>;

export const CpuSchema = v.object({
  model: v.string(),
  architecture: v.string(),
  /** Logical CPUs (hardware threads) online. */
  logicalCpus: v.number(),
  sockets: v.number(),
  coresPerSocket: v.number(),
  threadsPerCore: v.number(),
  physicalCores: v.number(),
  numaNodes: v.number(),
  /** The NUMA nodes that have CPUs, by id (one node holding every CPU when nothing says more). */
  numa: v.array(NumaNodeSchema),
  avx512f: v.boolean(),
  avx512bf16: v.boolean(),
  avx512vnni: v.boolean(),
  amxBf16: v.boolean(),
});
export type Cpu = v.InferOutput<typeof CpuSchema>;

export const MemorySchema = v.object({
  totalBytes: v.nullable(v.number()),
  availableBytes: v.nullable(v.number()),
  /** Size of /dev/shm (tensor-parallel workers exchange data through it). */
  shmBytes: v.nullable(v.number()),
});
export type Memory = v.InferOutput<typeof MemorySchema>;

export const HardwareSchema = v.object({
  /** What the engine will run on: the first vendor with visible GPUs, else the CPU. */
  accelerator: v.picklist(["nvidia", "amd", "cpu"]),
  /** The visible GPUs, in the order the engine will number them. */
  gpus: v.array(GpuSchema),
  topology: TopologySchema,
  cpu: v.nullable(CpuSchema),
  memory: MemorySchema,
  findings: v.array(FindingSchema),
});
export type Hardware = v.InferOutput<typeof HardwareSchema>;
