/**
 * Builds plans the way `xim plan` does, over fixture hardware and fixture
 * models: detection runs the test doubles, the configuration goes through
 * the real loader (so defaults and validation are the real ones).
 */
import { join } from "node:path";
import { loadConfig } from "../../src/core/config/load.ts";
import { detectHardware } from "../../src/hardware/detect.ts";
import type { Hardware } from "../../src/hardware/types.ts";
import { inspectModel } from "../../src/planner/inspect-model.ts";
import { explicitSettings, type Plan, type PlanInput, planEngine } from "../../src/planner/plan.ts";
import { MODELS, type Sandbox, type SysNode } from "./fixtures.ts";

export interface Scenario {
  /** XIM_FIXTURE_GPU scenario, or null for a machine without GPU tools. */
  gpu: string | null;
  cpu?: string;
  ramGiB?: number;
  /** Extra variables for detection (CUDA_VISIBLE_DEVICES ...). */
  detectEnv?: Record<string, string>;
  /** NUMA nodes in the fake /sys (none: an empty /sys, so only lscpu describes the CPU). */
  numa?: SysNode[];
  siblings?: (cpu: number) => number[];
}

export async function hardwareFor(box: Sandbox, s: Scenario): Promise<Hardware> {
  const tools = s.gpu ? ["nvidia-smi", "amd-smi", "rocm-smi", "lscpu"] : ["lscpu"];
  return detectHardware({
    env: {
      PATH: box.binWith(tools),
      ...(s.gpu ? { XIM_FIXTURE_GPU: s.gpu } : {}),
      XIM_FIXTURE_CPU: s.cpu ?? "epyc-9534-1s-nps4-smt-off",
      ...s.detectEnv,
    },
    procRoot: box.procWith(s.ramGiB ?? 256, (s.ramGiB ?? 256) - 8),
    sysRoot: box.sysWith(s.numa, s.siblings),
    shmPath: box.root,
  });
}

export function configFor(box: Sandbox, settings: Record<string, string>) {
  const env = { HOME: box.root, XDG_CACHE_HOME: join(box.root, "cache"), ...settings };
  const loaded = loadConfig({ env, cwd: box.root });
  return { loaded, env };
}

export async function planFor(
  box: Sandbox,
  s: Scenario,
  model: string,
  settings: Record<string, string> = {},
  extra: Partial<PlanInput> = {},
): Promise<Plan> {
  const hardware = await hardwareFor(box, s);
  const { loaded, env } = configFor(box, settings);
  return planEngine({
    hardware,
    model: await inspectModel(join(MODELS, model)),
    config: loaded.config,
    explicit: explicitSettings(loaded),
    env,
    ...extra,
  });
}
