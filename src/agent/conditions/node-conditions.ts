/**
 * @module The node's conditions, put together for `xim run`: the monitor of
 * the doctor's watched checks, the engine's conditions, the
 * `xim_node_condition` gauge, the GPU probe the engine's supervisor waits
 * on, and what /readyz says. The node holds one of these and joins it at a
 * few points (see docs/operations.md, "Node conditions"):
 * `start()` before registering (the start-up checks), `current()` for the
 * session, `engine` for the engine's events, `gpuProbe` for the supervisor,
 * `routerClock` for the session's acks (clock_skew), `readiness()` for
 * /readyz, `stop()` at the end.
 */
import type { Config } from "../../core/config/schema.ts";
import type { Logger } from "../../core/log.ts";
import { type NodeMetrics, setConditions } from "../../observability/node-metrics.ts";
import { blockingConditions, type NodeCondition } from "../../protocol/conditions.ts";
import { type RouterClockSample, watchClockSkew } from "./clock-skew.ts";
import { EngineConditions } from "./engine-conditions.ts";
import { KvCacheWatch } from "./kv-cache.ts";
import { ConditionMonitor, type WatchedCheck } from "./monitor.ts";

export interface NodeConditionsOptions {
  config: Config;
  env: Record<string, string | undefined>;
  logger: Logger;
  metrics?: NodeMetrics;
  /** Told each time the conditions change (the node sends a node_status at once). */
  onChange?: (conditions: NodeCondition[]) => void;
  /** The ready engine's http:// address, for kv_cache_exhausted from its /metrics. */
  engineUrl?: () => string | undefined;
  /** Default: the doctor's watched checks. */
  checks?: readonly WatchedCheck[];
  now?: () => number;
}

/** The check whose failure means the GPU is lost (src/doctor/checks/gpu-driver.ts). */
const GPU_CHECK = "gpu-driver";

export class NodeConditions {
  readonly monitor: ConditionMonitor;
  readonly engine: EngineConditions;
  readonly #kvCache: KvCacheWatch;
  /** For the session: each ack's router time raises or clears clock_skew. */
  readonly routerClock: (sample: RouterClockSample) => void;

  constructor(o: NodeConditionsOptions) {
    this.monitor = new ConditionMonitor({
      // XIM_PROC_ROOT: a fake /proc (tests), as `xim run` and `xim doctor` read it.
      doctor: { config: o.config, env: o.env, procRoot: o.env.XIM_PROC_ROOT || undefined },
      logger: o.logger,
      checks: o.checks,
      now: o.now,
      onChange: (conditions) => {
        if (o.metrics) setConditions(o.metrics, conditions);
        o.onChange?.(conditions);
      },
    });
    this.engine = new EngineConditions(this.monitor, o.now);
    this.#kvCache = new KvCacheWatch({
      engineUrl: o.engineUrl ?? (() => undefined),
      set: (finding) => this.monitor.set("engine:kv-cache", finding),
      logger: o.logger,
    });
    this.routerClock = watchClockSkew((finding) => this.monitor.set("router:clock", finding));
  }

  /** Runs the start-up checks (each raised condition is logged with its fix), then watches. */
  start(): Promise<NodeCondition[]> {
    this.#kvCache.start();
    return this.monitor.start();
  }

  stop(): Promise<void> {
    this.#kvCache.stop();
    this.engine.close();
    return this.monitor.stop();
  }

  current(): NodeCondition[] {
    return this.monitor.current();
  }

  /** For the engine's supervisor: asks the GPU now; why it is lost, or undefined when it answers. */
  readonly gpuProbe = async (): Promise<string | undefined> => {
    await this.monitor.checkNow([GPU_CHECK]);
    return this.current().find((c) => c.condition === "gpu_lost")?.message;
  };

  /** /readyz: one reason per blocking condition, naming it with its message and fix. */
  notReadyReasons(): string[] {
    return blockingConditions(this.current()).map((c) => `${c.condition}: ${c.message} (fix: ${c.fix})`);
  }
}
