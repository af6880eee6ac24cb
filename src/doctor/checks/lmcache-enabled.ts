/**
 * @module lmcache-enabled: whether LMCache is on and with which tiers; the
 * first LMCache symptom in the Xerotier documentation is "not enabled (no logs)".
 */
import { type Check, ok } from "../check.ts";
import { lmcacheEnabled as enabled, lmcacheDir } from "../lmcache-paths.ts";

export const lmcacheEnabled: Check = {
  id: "lmcache-enabled",
  group: "lmcache",
  title: "LMCache enabled",
  async run(ctx) {
    if (!enabled(ctx)) {
      return ok(
        `off (XEROTIER_AGENT_LMCACHE_ENABLED=false, KV cache backend ${ctx.config.kvCacheBackend}); set XEROTIER_AGENT_LMCACHE_ENABLED=true to share KV cache`,
      );
    }
    const disk = ctx.config.lmcacheDiskSizeGb
      ? `disk ${ctx.config.lmcacheDiskSizeGb} GB in ${lmcacheDir(ctx)}`
      : "no disk tier";
    const remote = ctx.config.lmcacheRedisUrl
      ? "Redis/Valkey shared tier"
      : "no shared tier (local CPU only)";
    return ok(`on: CPU tier, ${disk}, ${remote}`);
  },
};
