/**
 * @module gpu-fabric: on NVSwitch systems (HGX/DGX) the fabric must be
 * trained by nvidia-fabricmanager before CUDA works; otherwise every CUDA
 * program fails with error 802 "system not yet initialized" (research
 * peers §6, NIM troubleshooting). `nvidia-smi -q` shows Fabric State/Status;
 * "N/A" means no NVSwitch.
 */
import { type Check, type CheckOutcome, fail, ok, skipped } from "../check.ts";
import { type NvidiaGpuDetails, probeNvidia } from "../gpu-probe.ts";

const FIX =
  "Start the Fabric Manager of the same version as the driver: `sudo systemctl enable --now nvidia-fabricmanager` (on HGX B200 with Fabric Manager 570+ also `sudo modprobe ib_umad`), then check `nvidia-smi -q | grep -A2 Fabric`.";

export function fabricOutcome(details: readonly NvidiaGpuDetails[]): CheckOutcome {
  const known = details.filter((d) => d.fabricState !== undefined && d.fabricState !== "N/A");
  if (known.length === 0) return skipped("no NVSwitch fabric on this machine (Fabric State N/A)");
  const bad = known.filter(
    (d) => d.fabricState !== "Completed" || (d.fabricStatus !== undefined && d.fabricStatus !== "Success"),
  );
  if (bad.length > 0) {
    return fail(
      `NVSwitch fabric not ready on ${bad.map((d) => `${d.name} (${d.busId}): state ${d.fabricState}, status ${d.fabricStatus ?? "?"}`).join("; ")}; CUDA fails with error 802 until it is`,
      FIX,
    );
  }
  return ok(
    `NVSwitch fabric ready on ${known.length} GPU${known.length === 1 ? "" : "s"} (state Completed, status Success)`,
  );
}

export const gpuFabric: Check = {
  id: "gpu-fabric",
  group: "gpu",
  title: "NVSwitch fabric (Fabric Manager)",
  async run(ctx) {
    const nv = await probeNvidia(ctx);
    if (nv.state !== "ok") return skipped("no NVIDIA driver answers (see gpu-driver)");
    if (!nv.details) return skipped("`nvidia-smi -q` gave no details");
    return fabricOutcome(nv.details);
  },
};
