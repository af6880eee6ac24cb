/**
 * @module lmcache-dir: LMCache's disk-tier folder must be writable by the
 * agent's user when LMCache is on.
 */
import { type Check, skipped } from "../check.ts";
import { lmcacheDir as dirOf, lmcacheEnabled } from "../lmcache-paths.ts";
import { writableDir } from "../writable-dir.ts";

export const lmcacheDir: Check = {
  id: "lmcache-dir",
  group: "permissions",
  title: "LMCache folder is writable",
  async run(ctx) {
    if (!lmcacheEnabled(ctx)) return skipped("LMCache is off (XEROTIER_AGENT_LMCACHE_ENABLED=false)");
    return writableDir(ctx, dirOf(ctx), "XEROTIER_AGENT_LMCACHE_DIR");
  },
};
