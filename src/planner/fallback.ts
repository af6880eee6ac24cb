/**
 * @module Degrading a plan after the engine failed to start in a way a
 * simpler plan avoids, for the supervisor's next start (agent/engine-setup.ts):
 * - a speculative method vLLM refuses (speculative-* failure causes):
 *   n-gram instead, when XEROTIER_AGENT_SPECULATIVE_NGRAM_FALLBACK is on;
 * - LMCache failing inside vLLM (lmcache-failed): no LMCache, always (the
 *   Xerotier documentation: the node "gracefully degrades").
 * Each applies once (the new plan no longer has what failed) and returns a
 * note saying what changed and why, for the log and the router.
 */
import type { Config } from "../core/config/schema.ts";
import type { FailureCause } from "../engine/classify-failure.ts";
import { KV_TRANSFER_CONFIG, withoutLmcache } from "./lmcache.ts";
import type { Plan } from "./plan-types.ts";
import { ngramSpeculativeConfig } from "./speculative.ts";

export type FallbackConfig = Pick<Config, "speculativeNgramFallback" | "speculativeTokens">;

export interface Fallback {
  plan: Plan;
  /** One line for people: what the next start changes and why. */
  note: string;
}

const SPECULATIVE_CAUSES: readonly FailureCause[] = [
  "speculative-unsupported-model",
  "speculative-package-missing",
];

function speculativeMethod(plan: Plan): string | undefined {
  const i = plan.args.indexOf("--speculative-config");
  if (i === -1) return undefined;
  try {
    return String((JSON.parse(plan.args[i + 1]) as { method?: unknown }).method);
  } catch {
    return undefined;
  }
}

function ngramFallback(plan: Plan, config: FallbackConfig, summary: string): Fallback | undefined {
  const method = speculativeMethod(plan);
  if (method === undefined || method === "ngram" || !config.speculativeNgramFallback) return undefined;
  const spec = JSON.stringify(ngramSpeculativeConfig(config.speculativeTokens));
  const i = plan.args.indexOf("--speculative-config");
  const args = [...plan.args];
  args[i + 1] = spec;
  const note = `vLLM refused speculative method ${method} (${summary}): restarting with n-gram (XEROTIER_AGENT_SPECULATIVE_NGRAM_FALLBACK)`;
  return {
    note,
    plan: {
      ...plan,
      args,
      decisions: [
        ...plan.decisions.filter((d) => d.setting !== "--speculative-config"),
        { setting: "--speculative-config", value: spec, reason: note, source: "auto" },
      ],
      warnings: [...plan.warnings, note],
    },
  };
}

/** The plan for the next start after `cause`, or undefined when no fallback applies. */
export function fallbackAfterFailure(
  plan: Plan,
  failure: { cause: FailureCause; summary: string },
  config: FallbackConfig,
): Fallback | undefined {
  if (SPECULATIVE_CAUSES.includes(failure.cause)) return ngramFallback(plan, config, failure.summary);
  if (failure.cause === "lmcache-failed") {
    const i = plan.args.indexOf("--kv-transfer-config");
    if (i === -1 || plan.args[i + 1] !== KV_TRANSFER_CONFIG) return undefined;
    const note = `LMCache failed inside vLLM (${failure.summary}): restarting without LMCache; inference works, without KV cache sharing`;
    return { note, plan: withoutLmcache(plan, `it failed inside vLLM (${failure.summary})`) };
  }
  return undefined;
}
