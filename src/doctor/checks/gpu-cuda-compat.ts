/**
 * @module gpu-cuda-compat: can this driver run vLLM's CUDA build on these
 * GPUs? vLLM's wheels (v0.11 and later) are built with CUDA 12.8/12.9,
 * which needs driver 570 or newer (CUDA 12.8 GA: 570.26); 525-569 only
 * offers CUDA 12 minor-version compatibility (no PTX JIT), older is CUDA 11.
 * vLLM needs compute capability 7.5 or higher (7.0, Volta, only older releases).
 */
import { type Check, fail, ok, skipped, warn } from "../check.ts";
import { probeNvidia } from "../gpu-probe.ts";

export const MIN_DRIVER_FULL = 570;
export const MIN_DRIVER_CUDA12 = 525;

export const gpuCudaCompat: Check = {
  id: "gpu-cuda-compat",
  group: "gpu",
  title: "Driver and CUDA versions fit vLLM",
  async run(ctx) {
    const nv = await probeNvidia(ctx);
    if (nv.state === "error" && nv.kind === "driver-mismatch") {
      return fail(
        `nvidia-smi: ${nv.message}`,
        "The loaded kernel module and the driver libraries are different versions: reboot (or reload the nvidia kernel modules on an idle machine).",
      );
    }
    if (nv.state !== "ok") return skipped("no NVIDIA driver answers (see gpu-driver)");
    const driver = nv.driverVersion ?? nv.gpus[0].driverVersion ?? "unknown";
    const major = Number.parseInt(driver, 10);
    const cuda = nv.cudaVersion ? ` (CUDA ${nv.cudaVersion})` : "";
    const caps = nv.gpus.map((g) => ({ g, cc: Number.parseFloat(g.computeCapability ?? "") }));
    const tooOld = caps.filter((c) => Number.isFinite(c.cc) && c.cc < 7.0);
    if (tooOld.length > 0) {
      return fail(
        `driver ${driver}${cuda}; GPU ${tooOld.map((c) => `${c.g.index} ${c.g.name} cc ${c.g.computeCapability}`).join(", ")} is below compute capability 7.0`,
        "vLLM cannot use this GPU; serve on a newer GPU or on CPU (XEROTIER_AGENT_ENGINE=vllm with the CPU image).",
      );
    }
    if (Number.isFinite(major) && major < MIN_DRIVER_CUDA12) {
      return fail(
        `driver ${driver}${cuda} supports CUDA 11 at most; vLLM needs CUDA 12.8 (driver ${MIN_DRIVER_FULL} or newer)`,
        `Upgrade the NVIDIA driver to ${MIN_DRIVER_FULL} or newer (e.g. \`sudo apt-get install nvidia-driver-570\`), then reboot.`,
      );
    }
    if (Number.isFinite(major) && major < MIN_DRIVER_FULL) {
      return warn(
        `driver ${driver}${cuda} predates CUDA 12.8: vLLM's CUDA 12.8/12.9 wheels run only through minor-version compatibility and fail where kernels need PTX JIT`,
        `Upgrade the NVIDIA driver to ${MIN_DRIVER_FULL} or newer, then reboot.`,
      );
    }
    const volta = caps.filter((c) => Number.isFinite(c.cc) && c.cc < 7.5);
    if (volta.length > 0) {
      return warn(
        `driver ${driver}${cuda}; GPU ${volta.map((c) => `${c.g.index} ${c.g.name} cc ${c.g.computeCapability}`).join(", ")} is below compute capability 7.5, which current vLLM releases require`,
        "Use a vLLM release that still supports Volta (XEROTIER_AGENT_VLLM_PATH pointing at it) or a newer GPU.",
      );
    }
    const ccList = [...new Set(nv.gpus.map((g) => g.computeCapability ?? "unknown"))].join(", ");
    return ok(`driver ${driver}${cuda}, compute capability ${ccList}`);
  },
};
