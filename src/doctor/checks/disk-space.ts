/**
 * @module disk-space: free space where the model cache lives against the
 * size the cache may grow to (XEROTIER_AGENT_MODEL_CACHE_MAX_SIZE_GB), less
 * what it already holds, and against the configured model's weights when
 * they are known ("Out of disk space" in the Xerotier documentation's troubleshooting).
 */
import { statfs } from "node:fs/promises";
import { type Check, fail, ok, raisesOn, warn } from "../check.ts";
import { folderUsage, nearestExisting } from "../fs-probe.ts";
import { GB, GiB, gb, modelSize } from "../model-size.ts";

export const diskSpace: Check = {
  id: "disk-space",
  group: "disk",
  title: "Free disk space for the model cache",
  // statfs plus a walk of the cache folder (a few large files): cheap, every 15 s.
  watch: raisesOn("model_cache_disk_low", "degraded", 15_000),
  async run(ctx, signal) {
    const dir = ctx.config.modelCacheDir;
    const found = await nearestExisting(dir);
    const fs = await statfs(found.path);
    const free = fs.bavail * fs.bsize;
    const used = found.path === dir ? await folderUsage(dir, signal) : 0;
    const max = ctx.config.modelCacheMaxSizeGb * GB;
    const model = await modelSize(ctx.config.initialModelPath);
    const modelNote = model ? `; the configured model has ${gb(model.weightBytes)} of weights` : "";
    const evidence = `${gb(free)} free on the file system of ${found.path}; the cache holds ${gb(used)} of its ${ctx.config.modelCacheMaxSizeGb} GB limit${modelNote}`;
    if (free < GiB) {
      return fail(
        evidence,
        `Free space on that file system (the cache evicts least recently used models), or move the cache: XEROTIER_AGENT_MODEL_CACHE_DIR=<folder on a bigger disk>.`,
      );
    }
    if (model && !model.path.startsWith(dir) && free < model.weightBytes) {
      return fail(
        evidence,
        "Free at least the model's size on that file system, or move the cache with XEROTIER_AGENT_MODEL_CACHE_DIR.",
      );
    }
    if (free + used < max) {
      const fits = Math.max(1, Math.floor((free + used) / GB) - 1);
      return warn(
        `${evidence}: the cache cannot grow to its limit`,
        `Free space on that file system, or set XEROTIER_AGENT_MODEL_CACHE_MAX_SIZE_GB=${fits}.`,
      );
    }
    return ok(evidence);
  },
};
