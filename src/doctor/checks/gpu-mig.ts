/**
 * @module gpu-mig: MIG mode. With MIG on, each slice is its own CUDA device:
 * vLLM serves from one slice and cannot use tensor parallelism across slices.
 * A pending mode that differs from the current one needs a GPU reset.
 */
import { type Check, ok, skipped, warn } from "../check.ts";
import { probeNvidia } from "../gpu-probe.ts";

export const gpuMig: Check = {
  id: "gpu-mig",
  group: "gpu",
  title: "MIG mode",
  async run(ctx) {
    const nv = await probeNvidia(ctx);
    if (nv.state !== "ok") return skipped("no NVIDIA driver answers (see gpu-driver)");
    if (!nv.details && nv.migDevices.length === 0) return skipped("`nvidia-smi -q` gave no MIG mode");
    const details = nv.details ?? [];
    const on = details.filter((d) => d.migCurrent === "Enabled");
    const pending = details.filter(
      (d) => d.migPending && d.migCurrent && d.migPending !== d.migCurrent && d.migPending !== "N/A",
    );
    if (pending.length > 0) {
      const d = pending[0];
      return warn(
        `MIG mode on ${d.name} (${d.busId}) is ${d.migCurrent} with ${d.migPending} pending`,
        `Reset the GPU to apply it: \`sudo nvidia-smi -i ${d.busId} -r\` (no process may use it), or reboot.`,
      );
    }
    if (on.length > 0 || nv.migDevices.length > 0) {
      const uuid =
        /UUID:\s*(MIG-[^)\s]+)/.exec(nv.migDevices[0] ?? "")?.[1] ?? "MIG-<uuid from nvidia-smi -L>";
      const where = on.length > 0 ? on.map((d) => `${d.name} (${d.busId})`).join(", ") : "a GPU";
      return warn(
        `MIG enabled on ${where} with ${nv.migDevices.length} MIG device${nv.migDevices.length === 1 ? "" : "s"}: vLLM serves from one slice and cannot use tensor parallelism across slices`,
        `To serve from one slice set XEROTIER_AGENT_VLLM_ENV="CUDA_VISIBLE_DEVICES=${uuid}"; to give vLLM the whole GPU disable MIG on the host: \`sudo nvidia-smi -i 0 -mig 0\`, then reset the GPU.`,
      );
    }
    const modes = [...new Set(details.map((d) => d.migCurrent ?? "unknown"))].join(", ");
    return ok(`MIG ${modes === "N/A" ? "not supported (N/A)" : modes.toLowerCase()}`);
  },
};
