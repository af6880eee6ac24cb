/**
 * @module Every doctor check, in the order the report lists them (grouped
 * by area). `xim doctor --check ID` picks from this list.
 */
import type { Check } from "./check.ts";
import { configDir } from "./checks/config-dir.ts";
import { configValid } from "./checks/config-valid.ts";
import { cpuFlags } from "./checks/cpu-flags.ts";
import { cpuMemory } from "./checks/cpu-memory.ts";
import { cpuShm } from "./checks/cpu-shm.ts";
import { dataDirOwner } from "./checks/data-dir-owner.ts";
import { diskSpace } from "./checks/disk-space.ts";
import { engineProcessPorts } from "./checks/engine-ports.ts";
import { enrollmentState } from "./checks/enrollment-state.ts";
import { gpuContainerToolkit } from "./checks/gpu-container-toolkit.ts";
import { gpuCudaCompat } from "./checks/gpu-cuda-compat.ts";
import { gpuDeviceNodes } from "./checks/gpu-device-nodes.ts";
import { gpuDockerRuntime } from "./checks/gpu-docker-runtime.ts";
import { gpuDriver } from "./checks/gpu-driver.ts";
import { gpuFabric } from "./checks/gpu-fabric.ts";
import { gpuList } from "./checks/gpu-list.ts";
import { gpuMemoryHealth } from "./checks/gpu-memory-health.ts";
import { gpuMig } from "./checks/gpu-mig.ts";
import { gpuNvml } from "./checks/gpu-nvml.ts";
import { gpuPersistence } from "./checks/gpu-persistence.ts";
import { gpuThrottle } from "./checks/gpu-throttle.ts";
import { insecureEnrollment } from "./checks/insecure-enrollment.ts";
import { joinKey } from "./checks/join-key.ts";
import { leaseRatio } from "./checks/lease-ratio.ts";
import { lmcacheConfigWritable } from "./checks/lmcache-config-writable.ts";
import { lmcacheDir } from "./checks/lmcache-dir.ts";
import { lmcacheDisk } from "./checks/lmcache-disk.ts";
import { lmcacheEnabled } from "./checks/lmcache-enabled.ts";
import { lmcacheRedis } from "./checks/lmcache-redis.ts";
import { modelCacheDir } from "./checks/model-cache-dir.ts";
import { modelPath } from "./checks/model-path.ts";
import { routerReachable } from "./checks/router-reachable.ts";
import { saltSecret } from "./checks/salt-secret.ts";
import { socketBuffers } from "./checks/socket-buffers.ts";
import { vllmInstalled } from "./checks/vllm-installed.ts";

export const ALL_CHECKS: readonly Check[] = [
  gpuDriver,
  gpuList,
  gpuCudaCompat,
  gpuDeviceNodes,
  gpuNvml,
  gpuMig,
  gpuPersistence,
  gpuFabric,
  gpuMemoryHealth,
  gpuThrottle,
  gpuContainerToolkit,
  gpuDockerRuntime,
  cpuFlags,
  cpuMemory,
  cpuShm,
  configDir,
  modelCacheDir,
  lmcacheDir,
  dataDirOwner,
  socketBuffers,
  diskSpace,
  configValid,
  leaseRatio,
  insecureEnrollment,
  saltSecret,
  joinKey,
  enrollmentState,
  routerReachable,
  lmcacheEnabled,
  lmcacheRedis,
  lmcacheConfigWritable,
  lmcacheDisk,
  vllmInstalled,
  modelPath,
  engineProcessPorts,
];

export function findCheck(id: string): Check | undefined {
  return ALL_CHECKS.find((c) => c.id === id);
}
