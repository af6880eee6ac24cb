/**
 * @module disk-space: free space where the model cache lives against the
 * size the cache may grow to (XEROTIER_AGENT_MODEL_CACHE_MAX_SIZE_GB), less
 * what it already holds, and against the configured model's weights when
 * they are known ("Out of disk space" in the Xerotier documentation's troubleshooting).
 */
import { lstat, readdir, statfs } from "node:fs/promises";
import { join } from "node:path";
import { type Check, fail, ok, warn } from "../check.ts";
import { nearestExisting } from "../fs-probe.ts";
import { GB, GiB, gb, modelSize } from "../model-size.ts";

/** Bytes under a folder; stops early when the check is abandoned. */
async function usage(dir: string, signal: AbortSignal): Promise<number> {
  let total = 0;
  const stack = [dir];
  while (stack.length > 0 && !signal.aborted) {
    const d = stack.pop() as string;
    let names: string[];
    try {
      names = await readdir(d);
    } catch {
      continue;
    }
    for (const n of names) {
      try {
        const s = await lstat(join(d, n));
        if (s.isDirectory()) stack.push(join(d, n));
        else total += s.size;
      } catch {
        // vanished meanwhile
      }
    }
  }
  return total;
}

export const diskSpace: Check = {
  id: "disk-space",
  group: "disk",
  title: "Free disk space for the model cache",
  async run(ctx, signal) {
    const dir = ctx.config.modelCacheDir;
    const found = await nearestExisting(dir);
    const fs = await statfs(found.path);
    const free = fs.bavail * fs.bsize;
    const used = found.path === dir ? await usage(dir, signal) : 0;
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
