/**
 * @module `kv_cache_exhausted` from vLLM's own metrics: GET /metrics of the
 * ready engine every KV_CACHE_EVERY_MS; the condition holds while
 * `vllm:kv_cache_usage_perc` (`vllm:gpu_cache_usage_perc` on vLLM before
 * 0.11) is at or above KV_CACHE_FULL and `vllm:num_preemptions_total` rose
 * since the previous sample: the engine is evicting running requests to
 * recompute them later, so every request slows down. Only an engine on a
 * TCP address is read (fetch cannot reach a Unix socket); the body is read
 * up to METRICS_MAX_BYTES.
 */
import { guarded } from "../../core/guard.ts";
import type { Logger } from "../../core/log.ts";
import type { ConditionFinding } from "../../doctor/check.ts";

export const KV_CACHE_EVERY_MS = 15_000;
/** Usage (0..1) from which the cache counts as full. */
export const KV_CACHE_FULL = 0.98;
const METRICS_MAX_BYTES = 4 * 1024 * 1024;
const METRICS_TIMEOUT_MS = 5000;

export interface KvCacheSample {
  /** 0..1, the largest over the engine's series; undefined when not exported. */
  usage: number | undefined;
  /** Sum over the series; undefined when not exported. */
  preemptions: number | undefined;
}

/** The two metrics from a Prometheus text exposition (comments and other series ignored). */
export function parseKvCacheMetrics(text: string): KvCacheSample {
  let usage: number | undefined;
  let preemptions: number | undefined;
  for (const line of text.split("\n")) {
    const m = /^(vllm:(?:kv|gpu)_cache_usage_perc|vllm:num_preemptions_total)(?:\{[^}]*\})?\s+(\S+)/.exec(
      line,
    );
    if (!m) continue;
    const value = Number(m[2]);
    if (!Number.isFinite(value)) continue;
    if (m[1] === "vllm:num_preemptions_total") preemptions = (preemptions ?? 0) + value;
    else usage = Math.max(usage ?? 0, value);
  }
  return { usage, preemptions };
}

/** The condition a sample means, given the previous sample's preemptions. */
export function kvCacheFinding(
  sample: KvCacheSample,
  previous: number | undefined,
): ConditionFinding | undefined {
  const { usage, preemptions } = sample;
  if (usage === undefined || usage < KV_CACHE_FULL) return undefined;
  if (preemptions === undefined || previous === undefined || preemptions <= previous) return undefined;
  return {
    condition: "kv_cache_exhausted",
    severity: "degraded",
    message: `the engine's KV cache is ${(usage * 100).toFixed(1)}% used and it preempted ${preemptions - previous} running request(s) since the last look: requests are evicted and recomputed`,
    fix: "Lower the load (XEROTIER_AGENT_MAX_CONCURRENT), give the cache more memory (XEROTIER_AGENT_GPU_MEMORY_UTILIZATION), or shorten XEROTIER_AGENT_MAX_MODEL_LEN.",
  };
}

async function readMetrics(baseUrl: string): Promise<string | undefined> {
  const res = await fetch(`${baseUrl}/metrics`, { signal: AbortSignal.timeout(METRICS_TIMEOUT_MS) });
  if (res.status !== 200 || !res.body) return undefined;
  const chunks: Uint8Array[] = [];
  let size = 0;
  for await (const chunk of res.body) {
    size += chunk.byteLength;
    if (size > METRICS_MAX_BYTES) {
      await res.body.cancel().catch(() => undefined);
      return undefined;
    }
    chunks.push(chunk);
  }
  return Buffer.concat(chunks).toString("utf8");
}

/** Samples the engine's /metrics on a timer and sets `kv_cache_exhausted` through `set`. */
export class KvCacheWatch {
  readonly #engineUrl: () => string | undefined;
  readonly #set: (finding: ConditionFinding | undefined) => void;
  readonly #log: Logger;
  #previous: number | undefined;
  #timer: NodeJS.Timeout | undefined;

  constructor(o: {
    /** The ready engine's http:// address, or undefined. */
    engineUrl: () => string | undefined;
    set: (finding: ConditionFinding | undefined) => void;
    logger: Logger;
  }) {
    this.#engineUrl = o.engineUrl;
    this.#set = o.set;
    this.#log = o.logger;
  }

  start(everyMs = KV_CACHE_EVERY_MS): void {
    this.#timer ??= setInterval(
      guarded(this.#log, "sampling the engine's KV cache", () => this.sample()),
      everyMs,
    );
    this.#timer.unref();
  }

  stop(): void {
    clearInterval(this.#timer);
    this.#timer = undefined;
  }

  /** One look at the engine's metrics. */
  async sample(): Promise<void> {
    const url = this.#engineUrl();
    const text = url?.startsWith("http://") ? await readMetrics(url).catch(() => undefined) : undefined;
    if (text === undefined) {
      this.#previous = undefined;
      this.#set(undefined);
      return;
    }
    const sample = parseKvCacheMetrics(text);
    this.#set(kvCacheFinding(sample, this.#previous));
    this.#previous = sample.preemptions;
  }
}
