/**
 * @module Where LMCache lives for this configuration: whether it is on
 * (XEROTIER_AGENT_LMCACHE_ENABLED, or the lmcache KV backend), its disk-tier
 * folder, and the config file the agent writes (LMCACHE_CONFIG_FILE as the
 * Xerotier images set it, else lmcache_config.yaml in the config folder).
 */
import { join } from "node:path";
import { xdgCacheHome } from "../core/paths.ts";
import type { DoctorContext } from "./context.ts";

export function lmcacheEnabled(ctx: DoctorContext): boolean {
  return ctx.config.lmcacheEnabled || ctx.config.kvCacheBackend === "lmcache";
}

export function lmcacheDir(ctx: DoctorContext): string {
  return ctx.config.lmcacheDir ?? join(xdgCacheHome(ctx.env), "lmcache");
}

export function lmcacheConfigFile(ctx: DoctorContext): string {
  return ctx.env.LMCACHE_CONFIG_FILE || join(ctx.config.configDir, "lmcache_config.yaml");
}
