/**
 * @module gpu-device-nodes: the device nodes CUDA opens must exist:
 * /dev/nvidiactl, /dev/nvidia-uvm and /dev/nvidiaN per GPU (dstack detects
 * GPUs by /dev/nvidiactl for this reason); for ROCm /dev/kfd and /dev/dri.
 */
import { readdir } from "node:fs/promises";
import { join } from "node:path";
import { type Check, fail, ok, skipped } from "../check.ts";
import { statOrUndefined } from "../fs-probe.ts";
import { probeAmd, probeNvidia } from "../gpu-probe.ts";
import { isContainer } from "../proc.ts";

async function listDev(devRoot: string, prefix: string): Promise<string[]> {
  try {
    return (await readdir(devRoot)).filter((n) => n.startsWith(prefix)).sort();
  } catch {
    return [];
  }
}

export const gpuDeviceNodes: Check = {
  id: "gpu-device-nodes",
  group: "gpu",
  title: "GPU device nodes",
  async run(ctx) {
    const nv = await probeNvidia(ctx);
    const nodes = await listDev(ctx.devRoot, "nvidia");
    const container = await isContainer(ctx);
    if (nv.state !== "missing" || nodes.length > 0) {
      const want = ["nvidiactl", "nvidia-uvm"];
      const count = nv.state === "ok" ? nv.gpus.length : 0;
      for (let i = 0; i < count; i++) want.push(`nvidia${i}`);
      if (count === 0 && !nodes.some((n) => /^nvidia\d+$/.test(n))) want.push("nvidia0");
      const missing = want.filter((n) => !nodes.includes(n));
      if (missing.length === 0) return ok(`${nodes.map((n) => join(ctx.devRoot, n)).join(" ")}`);
      const evidence = `missing ${missing.map((n) => join(ctx.devRoot, n)).join(", ")}${nodes.length ? ` (present: ${nodes.join(" ")})` : ""}`;
      return fail(
        evidence,
        container
          ? "Start the container with the GPUs: `docker run --gpus all ...` (or `--device nvidia.com/gpu=all` with CDI); the NVIDIA runtime creates these nodes."
          : "Create the nodes on the host: `sudo nvidia-modprobe -u -c=0` (or load the modules: `sudo modprobe nvidia nvidia_uvm`).",
      );
    }
    const amd = await probeAmd(ctx);
    if (amd.state !== "missing") {
      const kfd = await statOrUndefined(join(ctx.devRoot, "kfd"));
      const render = (await listDev(join(ctx.devRoot, "dri"), "renderD")).length;
      if (kfd && render > 0)
        return ok(`${join(ctx.devRoot, "kfd")} and ${render} render node(s) in ${join(ctx.devRoot, "dri")}`);
      return fail(
        `${kfd ? "" : `missing ${join(ctx.devRoot, "kfd")} `}${render ? "" : `no render nodes in ${join(ctx.devRoot, "dri")}`}`.trim(),
        container
          ? "Pass the devices to the container: `--device /dev/kfd --device /dev/dri --group-add video`."
          : "Load the amdgpu driver: `sudo modprobe amdgpu`.",
      );
    }
    return skipped("no GPU driver on this machine (see gpu-driver)");
  },
};
