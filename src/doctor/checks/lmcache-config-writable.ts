/**
 * @module lmcache-config-writable: the agent writes LMCache's config file
 * (LMCACHE_CONFIG_FILE, /var/lib/inference/.config/xerotier/lmcache_config.yaml
 * in the Xerotier images) before starting vLLM; "Config write failed" is one
 * of the Xerotier documentation's LMCache symptoms.
 */
import { dirname } from "node:path";
import { type Check, fail, skipped } from "../check.ts";
import { octal, shellQuote, statOrUndefined, writableBy } from "../fs-probe.ts";
import { lmcacheConfigFile, lmcacheEnabled } from "../lmcache-paths.ts";
import { writableDir } from "../writable-dir.ts";

export const lmcacheConfigWritable: Check = {
  id: "lmcache-config-writable",
  group: "lmcache",
  title: "LMCache config file location is writable",
  async run(ctx) {
    if (!lmcacheEnabled(ctx)) return skipped("LMCache is off");
    const file = lmcacheConfigFile(ctx);
    const existing = await statOrUndefined(file);
    if (existing) {
      const canWrite = ctx.uid === 0 || (existing.uid === ctx.uid && (existing.mode & 0o200) !== 0);
      if (!canWrite || !writableBy((await statOrUndefined(dirname(file))) ?? existing, ctx.uid, ctx.gids)) {
        return fail(
          `${file} (owner uid ${existing.uid}, mode ${octal(existing.mode)}) cannot be rewritten by uid ${ctx.uid}`,
          `sudo chown ${ctx.uid}:${ctx.gid} ${shellQuote(file)} ${shellQuote(dirname(file))} && chmod 600 ${shellQuote(file)}`,
        );
      }
    }
    const r = await writableDir(ctx, dirname(file), "LMCACHE_CONFIG_FILE");
    return { ...r, evidence: `${file}: ${r.evidence}` };
  },
};
