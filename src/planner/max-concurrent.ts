/**
 * @module How many streams the node accepts at once: the number the relay
 * holds in flight and the node offers the router at registration.
 */

import type { Config } from "../core/config/schema.ts";

/**
 * The in-flight ceiling: XEROTIER_AGENT_MAX_CONCURRENT when set, else the
 * planner's, else the engine's own batch limit (XEROTIER_AGENT_MAX_NUM_SEQS,
 * or vLLM's default --max-num-seqs on the first GPU: 1024 with 70 GiB or
 * more unless an A100, else 256; research vllm.md), else 5 (CPU and the
 * simulated engine, the Xerotier documentation's CPU starting point).
 */
export function deriveMaxConcurrent(
  config: Pick<Config, "maxConcurrent" | "maxNumSeqs">,
  planned?: number | null,
  gpus?: ReadonlyArray<{ name: string; memoryTotalMiB: number }>,
): number {
  if (config.maxConcurrent !== undefined) return config.maxConcurrent;
  if (planned) return planned;
  if (config.maxNumSeqs !== undefined) return config.maxNumSeqs;
  const gpu = gpus?.[0];
  if (gpu) return gpu.memoryTotalMiB >= 70 * 1024 && !/a100/i.test(gpu.name) ? 1024 : 256;
  return 5;
}
