/**
 * @module lmcache-disk: LMCache's disk tier against its limit
 * (XEROTIER_AGENT_LMCACHE_DISK_SIZE_GB, or the automatic size the plan
 * gives it when unset): what the folder holds now, and
 * whether its file system has room for the rest of the limit. A disk tier
 * larger than the free space fails mid-run with "No space left on device"
 * inside vLLM, far from the setting that caused it.
 */
import { statfs } from "node:fs/promises";
import { autoDiskTierGb } from "../../planner/lmcache.ts";
import { type Check, ok, raisesOn, skipped, warn } from "../check.ts";
import { folderUsage, nearestExisting } from "../fs-probe.ts";
import { lmcacheDir, lmcacheEnabled } from "../lmcache-paths.ts";
import { GB, gb } from "../model-size.ts";

export const lmcacheDisk: Check = {
  id: "lmcache-disk",
  group: "lmcache",
  title: "LMCache disk tier fits its disk",
  // statfs of the disk tier: cheap; LMCache only slows down without it, so degraded.
  watch: raisesOn("lmcache_degraded", "degraded", 30_000, ["warn", "fail"]),
  async run(ctx, signal) {
    if (!lmcacheEnabled(ctx)) return skipped("LMCache is off (XEROTIER_AGENT_LMCACHE_ENABLED=false)");
    const setting = ctx.config.lmcacheDiskSizeGb;
    if (setting === 0) return skipped("no disk tier (XEROTIER_AGENT_LMCACHE_DISK_SIZE_GB=0)");
    const dir = lmcacheDir(ctx);
    const found = await nearestExisting(dir);
    const fs = await statfs(found.path);
    const free = fs.bavail * fs.bsize;
    const used = found.path === dir ? await folderUsage(dir, signal) : 0;
    // Unset: the size the plan gives it (the space LMCache already uses counts as available to it).
    const limitGb = setting ?? autoDiskTierGb(free + used);
    if (limitGb === 0)
      return skipped(`no disk tier: ${gb(free)} free for ${dir} (the automatic size needs 2 GB)`);
    const limit = limitGb * GB;
    const how = setting === undefined ? " (automatic: half the free space, at most 100 GB)" : "";
    const evidence = `${dir} holds ${gb(used)} of its ${limitGb} GB limit${how}; ${gb(free)} free on its file system`;
    if (used > limit) {
      return warn(
        `${evidence}: over the limit`,
        "LMCache evicts down to its limit while it runs; if the folder stays over it, it holds files of an earlier configuration: stop the node and empty the folder.",
      );
    }
    if (free < limit - used) {
      return warn(
        `${evidence}: the disk cannot hold the remaining ${gb(limit - used)}`,
        `Lower XEROTIER_AGENT_LMCACHE_DISK_SIZE_GB to at most ${Math.floor((used + free) / GB)}, or move the disk tier: XEROTIER_AGENT_LMCACHE_DIR=<folder on a bigger disk>.`,
      );
    }
    return ok(evidence);
  },
};
