/**
 * @module cpu-shm: the size of /dev/shm. vLLM's worker processes exchange
 * tensors through shared memory; docker's default of 64 MB breaks them.
 * The Xerotier CPU compose file gives 90 GB (`shm_size: 90g`) or shares the host's
 * IPC namespace (`ipc: host`).
 */
import { join } from "node:path";
import { type Check, ok, skipped, warn } from "../check.ts";
import { detectedHardware } from "../gpu-probe.ts";
import { GiB } from "../model-size.ts";

export const MIN_SHM_BYTES = GiB;

function size(bytes: number): string {
  return bytes >= GiB ? `${(bytes / GiB).toFixed(1)} GiB` : `${Math.round(bytes / 1024 ** 2)} MiB`;
}

export const cpuShm: Check = {
  id: "cpu-shm",
  group: "cpu",
  title: "Shared memory (/dev/shm)",
  async run(ctx) {
    const hw = await detectedHardware(ctx);
    const shm = hw.memory.shmBytes;
    const path = join(ctx.devRoot, "shm");
    if (shm === null) return skipped(`cannot measure ${path}`);
    if (shm < MIN_SHM_BYTES) {
      return warn(
        `${path} is ${size(shm)} (docker's default is 64 MB); vLLM's workers need far more`,
        "Give the container more shared memory: `docker run --shm-size=16g` or `--ipc=host` (compose: `shm_size: 90g` as in the Xerotier CPU compose file, or `ipc: host`).",
      );
    }
    return ok(`${path} is ${size(shm)}`);
  },
};
