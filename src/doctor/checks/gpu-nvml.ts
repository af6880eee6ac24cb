/**
 * @module gpu-nvml: the NVML "Unknown Error" that a container gets when the
 * host runs `systemctl daemon-reload` with the systemd cgroup driver: the
 * container keeps its /dev/nvidia* files but loses the cgroup permission to
 * open them (NVIDIA container toolkit issue 48; gpustack#2047).
 */
import { type Check, fail, ok, skipped } from "../check.ts";
import { probeNvidia } from "../gpu-probe.ts";
import { isContainer } from "../proc.ts";

export const gpuNvml: Check = {
  id: "gpu-nvml",
  group: "gpu",
  title: 'NVML initialises (no container-toolkit "Unknown Error")',
  async run(ctx) {
    const nv = await probeNvidia(ctx);
    if (nv.state === "missing") return skipped("nvidia-smi is not on PATH");
    if (nv.state === "ok") return ok("NVML initialises");
    if (nv.state === "error" && nv.kind === "nvml-unknown-error") {
      const where = (await isContainer(ctx))
        ? "inside a container: it lost access to its GPUs, typically after the host ran `systemctl daemon-reload` (NVIDIA container toolkit issue 48)"
        : "on the host: the driver's device nodes are not accessible";
      return fail(
        `nvidia-smi: ${nv.message} ${where}`,
        'Restart the container to get the GPUs back (`docker restart <container>`). To stop it recurring, on the host run `sudo nvidia-ctk system create-dev-char-symlinks --create-all`, or give GPUs through CDI (`sudo nvidia-ctk cdi generate --output=/etc/cdi/nvidia.yaml`, then `--device nvidia.com/gpu=all`), or switch Docker to `"exec-opts": ["native.cgroupdriver=cgroupfs"]` in /etc/docker/daemon.json.',
      );
    }
    return skipped("nvidia-smi fails for another reason (see gpu-driver)");
  },
};
