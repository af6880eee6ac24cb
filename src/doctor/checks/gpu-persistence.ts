/**
 * @module gpu-persistence: persistence mode keeps the driver initialised
 * between processes; without it every engine start pays the GPU
 * initialisation and nvidia-smi calls are slow.
 */
import { type Check, ok, skipped, warn } from "../check.ts";
import { probeNvidia } from "../gpu-probe.ts";

export const gpuPersistence: Check = {
  id: "gpu-persistence",
  group: "gpu",
  title: "Persistence mode",
  async run(ctx) {
    const nv = await probeNvidia(ctx);
    if (nv.state !== "ok") return skipped("no NVIDIA driver answers (see gpu-driver)");
    const details = (nv.details ?? []).filter((d) => d.persistenceMode !== undefined);
    if (details.length === 0) return skipped("`nvidia-smi -q` gave no persistence mode");
    const off = details.filter((d) => d.persistenceMode === "Disabled");
    if (off.length > 0) {
      return warn(
        `persistence mode is off on ${off.map((d) => `${d.name} (${d.busId})`).join(", ")}`,
        "On the host: `sudo systemctl enable --now nvidia-persistenced` (or `sudo nvidia-smi -pm 1`, lost at reboot).",
      );
    }
    return ok(
      `persistence mode ${[...new Set(details.map((d) => d.persistenceMode))].join(", ").toLowerCase()}`,
    );
  },
};
