/**
 * @module What a failed nvidia-smi means, from its output and exit code:
 * the one classifier that hardware detection (the plan's findings),
 * `xim doctor` (its fixes) and a running node watching for a lost GPU
 * share. The texts are nvidia-smi's own (tests/fixtures/gpu/ holds the
 * captured ones); the exit codes are those `man nvidia-smi` lists under
 * RETURN VALUE.
 */

export type NvidiaSmiFailure =
  /** "Failed to initialize NVML: Unknown Error": a container lost its GPU device rules (a host `systemctl daemon-reload`). */
  | "nvml-unknown-error"
  /** The driver was upgraded while the old kernel module is still loaded. */
  | "driver-mismatch"
  /** No driver loaded, or none reachable from this container (exit 9). */
  | "no-driver"
  /** The driver answers and lists no GPU (exit 6). */
  | "no-devices"
  /** libnvidia-ml.so is missing (exit 12). */
  | "nvml-library-missing"
  /** A GPU fell off the bus or is lost (exit 15); it needs a reset or a reboot. */
  | "gpu-lost"
  | "other";

/** Classify a failed nvidia-smi by its output (stdout and stderr together) and, where known, its exit code. */
export function classifyNvidiaSmiFailure(output: string, exitCode: number | null = null): NvidiaSmiFailure {
  if (/NVML: Unknown Error/i.test(output)) return "nvml-unknown-error";
  if (/Driver\/library version mismatch/i.test(output)) return "driver-mismatch";
  if (exitCode === 15 || /fallen off the bus|GPU is lost/i.test(output)) return "gpu-lost";
  if (exitCode === 9 || /couldn't communicate with the NVIDIA driver/i.test(output)) return "no-driver";
  if (exitCode === 6 || /No devices were found/i.test(output)) return "no-devices";
  if (exitCode === 12) return "nvml-library-missing";
  return "other";
}

/**
 * Whether a failure means GPUs that answered before are gone from this
 * process's view (for a node that had them when it started), rather than a
 * machine that never had a working driver.
 */
export function meansGpuLost(failure: NvidiaSmiFailure): boolean {
  return failure === "nvml-unknown-error" || failure === "gpu-lost" || failure === "no-devices";
}
