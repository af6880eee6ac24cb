/**
 * @module gpu-driver: is a GPU driver installed and answering? nvidia-smi
 * first, then amd-smi (ROCm). No tool and no device node means a CPU-only
 * machine: a warning (CPU serving works), not a failure.
 */

import { join } from "node:path";
import type { NvidiaSmiFailure } from "../../hardware/nvidia-failure.ts";
import { type Check, fail, ok, raisesOn, warn } from "../check.ts";
import { statOrUndefined } from "../fs-probe.ts";
import { describeGpus, probeAmd, probeNvidia } from "../gpu-probe.ts";

const NVIDIA_FIX: Record<NvidiaSmiFailure, string> = {
  "nvml-unknown-error":
    "The container lost its GPUs (see gpu-nvml): restart the container now; on the host run `sudo nvidia-ctk system create-dev-char-symlinks --create-all` or use CDI so it does not recur.",
  "driver-mismatch":
    "The kernel module and the user-space driver libraries differ (a driver upgrade without a reboot): reboot, or on an idle machine `sudo rmmod nvidia_uvm nvidia_drm nvidia_modeset nvidia && sudo modprobe nvidia`.",
  "no-driver":
    "Install or load the NVIDIA driver on the host (`sudo modprobe nvidia`; check `dmesg | grep -i nvidia`); in a container, start it with `--gpus all` (NVIDIA Container Toolkit).",
  "no-devices":
    "The driver sees no GPU: on the host check `lspci | grep -i nvidia` and `dmesg | grep -i xid`; in a container pass the GPUs with `--gpus all` or NVIDIA_VISIBLE_DEVICES=all.",
  "nvml-library-missing":
    "nvidia-smi cannot load libnvidia-ml.so: reinstall the driver's user-space libraries (on a host the nvidia-utils/libnvidia-compute packages of the running driver); in a container start it with `--gpus all` so the runtime mounts them.",
  "gpu-lost":
    "A GPU fell off the bus: look for Xid 79 with `sudo dmesg | grep -i xid`; the GPU needs a reset (`nvidia-smi -r`) or the host a reboot.",
  other: "Run `nvidia-smi` by hand to see the full error; reinstall the driver if it persists.",
};

export const gpuDriver: Check = {
  id: "gpu-driver",
  group: "gpu",
  title: "GPU driver answers",
  // nvidia-smi answers in well under a second and touches no GPU memory: every 5 s shows a lost GPU within 15 s.
  watch: raisesOn("gpu_lost", "blocking", 5000),
  async run(ctx) {
    const nv = await probeNvidia(ctx);
    if (nv.state === "ok") {
      const cuda = nv.cudaVersion ? `, CUDA ${nv.cudaVersion}` : "";
      return ok(
        `nvidia-smi: driver ${nv.driverVersion}${cuda}, ${nv.gpus.length} GPU${nv.gpus.length === 1 ? "" : "s"}`,
      );
    }
    if (nv.state === "timeout") {
      return fail(
        `nvidia-smi hung (${nv.reason})`,
        "The driver is stuck: look for Xid errors with `sudo dmesg | grep -i xid`; a GPU that fell off the bus needs a reboot.",
      );
    }
    if (nv.state === "error") return fail(`nvidia-smi: ${nv.message}`, NVIDIA_FIX[nv.kind]);

    const amd = await probeAmd(ctx);
    if (amd.state === "ok") return ok(`amd-smi: ${describeGpus(amd.gpus)}`);
    if (amd.state === "timeout")
      return fail(
        `amd-smi hung (${amd.reason})`,
        "Check `sudo dmesg | grep -i amdgpu`; reboot if the GPU is wedged.",
      );
    if (amd.state === "error") {
      return fail(
        `amd-smi: ${amd.message}`,
        "Load the amdgpu driver (`sudo modprobe amdgpu`, ROCm installed); in a container pass `--device /dev/kfd --device /dev/dri`.",
      );
    }
    if (await statOrUndefined(join(ctx.devRoot, "nvidiactl"))) {
      return fail(
        `${join(ctx.devRoot, "nvidiactl")} exists but nvidia-smi is not on PATH`,
        "In a container add the utility capability: `-e NVIDIA_DRIVER_CAPABILITIES=compute,utility` (set by `--gpus all`); on a host install the driver's utilities (nvidia-utils).",
      );
    }
    if (await statOrUndefined(join(ctx.devRoot, "kfd"))) {
      return fail(
        `${join(ctx.devRoot, "kfd")} exists but amd-smi is not on PATH`,
        "Install amd-smi (part of ROCm): `sudo apt-get install amd-smi-lib` or the ROCm packages.",
      );
    }
    return warn(
      "no GPU: nvidia-smi and amd-smi are not on PATH and there is no /dev/nvidiactl or /dev/kfd; this node can serve on CPU only",
      "For GPU serving install the NVIDIA driver so `nvidia-smi` answers (in a container: `docker run --gpus all` with the NVIDIA Container Toolkit), or ROCm for AMD GPUs. For CPU serving nothing is needed.",
    );
  },
};
