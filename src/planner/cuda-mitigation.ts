/**
 * @module CUDA graph and custom all-reduce mitigations (research/vllm.md
 * §8). PCIe-only GPUs with TP > 1 (A30, A40, L40/L40S, RTX and any group
 * `nvidia-smi topo -m` shows without NVLink) start with
 * --disable-custom-all-reduce. On a classified capture failure the
 * supervisor restarts with `nextMitigation(plan, cause)`: then
 * NCCL_P2P_DISABLE=1, then --enforce-eager.
 */

import type { Hardware } from "../hardware/types.ts";
import type { PlanBuilder } from "./builder.ts";
import type { MitigationRung, Plan, PlanConfig } from "./plan-types.ts";

/** GPUs whose multi-GPU CUDA graph/custom all-reduce problems are known (the PCIe family, research §8). */
export const PCIE_FAMILY = /\b(A30|A40|A10G?|A16|A2|L4|L40S?|L20|RTX|A6000|A5000|A4000)\b/i;

export const LADDER: readonly MitigationRung[] = [
  "disable-custom-all-reduce",
  "nccl-p2p-disable",
  "enforce-eager",
];

export function affectedReason(hw: Hardware, tp: number): string | null {
  if (hw.accelerator !== "nvidia" || tp <= 1) return null;
  const name = hw.gpus[0]?.name ?? "";
  const family = PCIE_FAMILY.exec(name)?.[1];
  if (family) {
    return `${name} with TP ${tp}: CUDA graph capture with custom all-reduce fails or hangs on ${family}-class PCIe GPUs (vLLM #5613, #9046); NCCL all-reduce is used instead`;
  }
  if (hw.topology.kind === "pcie" || hw.topology.kind === "mixed") {
    return `TP ${tp} over GPUs without NVLink (${hw.topology.detail}): custom all-reduce over PCIe P2P is the known hang (vLLM #8410, #4996); NCCL all-reduce is used instead`;
  }
  return null;
}

export function planCudaMitigation(
  b: PlanBuilder,
  hw: Hardware,
  config: PlanConfig,
  tp: number,
  auto: boolean,
): MitigationRung[] {
  const applied: MitigationRung[] = [];
  if (hw.accelerator === "cpu") return applied;
  if (config.vllmDisableCustomAllReduce) {
    b.flag("--disable-custom-all-reduce", null, "XEROTIER_AGENT_VLLM_DISABLE_CUSTOM_ALL_REDUCE", "explicit");
    applied.push("disable-custom-all-reduce");
  } else if (auto && config.autoCudaMitigation) {
    const why = affectedReason(hw, tp);
    if (why) {
      b.flag("--disable-custom-all-reduce", null, why);
      applied.push("disable-custom-all-reduce");
    }
  }
  if (config.vllmDisableCudaGraphs) {
    b.flag("--enforce-eager", null, "XEROTIER_AGENT_VLLM_DISABLE_CUDA_GRAPHS: CUDA graphs off", "explicit");
    applied.push("enforce-eager");
  }
  return applied;
}

function insertBefore(args: string[], flag: string, before: readonly string[]): string[] {
  const i = args.findIndex((a) => before.includes(a));
  return i < 0 ? [...args, flag] : [...args.slice(0, i), flag, ...args.slice(i)];
}

/**
 * The plan for the next start after a classified CUDA graph capture or
 * NCCL failure (`cause` says which, for the reason), or null when the
 * ladder is exhausted or XEROTIER_AGENT_AUTO_CUDA_MITIGATION is off.
 * Rungs: --disable-custom-all-reduce (TP > 1), NCCL_P2P_DISABLE=1 (TP > 1),
 * --enforce-eager.
 */
export function nextMitigation(plan: Plan, failureCause: string): Plan | null {
  if (!plan.mitigation.enabled || plan.accelerator === "cpu") return null;
  const has = (r: MitigationRung) =>
    plan.mitigation.applied.includes(r) ||
    (r === "disable-custom-all-reduce" && plan.args.includes("--disable-custom-all-reduce")) ||
    (r === "enforce-eager" && plan.args.includes("--enforce-eager")) ||
    (r === "nccl-p2p-disable" && plan.env.NCCL_P2P_DISABLE === "1");
  const multi = plan.tensorParallelSize > 1;
  const rung = LADDER.find((r) => !has(r) && (r === "enforce-eager" || multi));
  if (!rung) return null;
  const next: Plan = {
    ...plan,
    args: [...plan.args],
    env: { ...plan.env },
    decisions: [...plan.decisions],
    warnings: [...plan.warnings],
    mitigation: { ...plan.mitigation, applied: [...plan.mitigation.applied, rung] },
  };
  const reason = `restart after ${failureCause}: mitigation step ${LADDER.indexOf(rung) + 1} of ${LADDER.length}`;
  switch (rung) {
    case "disable-custom-all-reduce":
      next.args = insertBefore(next.args, "--disable-custom-all-reduce", [
        "--enforce-eager",
        "--speculative-config",
        "--kv-transfer-config",
      ]);
      next.decisions.push({ setting: "--disable-custom-all-reduce", value: "on", reason, source: "auto" });
      break;
    case "nccl-p2p-disable":
      next.env.NCCL_P2P_DISABLE = "1";
      next.decisions.push({
        setting: "NCCL_P2P_DISABLE",
        value: "1",
        reason: `${reason} (NCCL itself hangs on P2P)`,
        source: "auto",
      });
      break;
    case "enforce-eager":
      next.args = insertBefore(next.args, "--enforce-eager", [
        "--speculative-config",
        "--kv-transfer-config",
      ]);
      next.decisions.push({
        setting: "--enforce-eager",
        value: "on",
        reason: `${reason} (CUDA graphs off, the last resort)`,
        source: "auto",
      });
      break;
  }
  next.warnings.push(`CUDA mitigation applied after ${failureCause}: ${rung}`);
  return next;
}
