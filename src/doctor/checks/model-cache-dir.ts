/**
 * @module model-cache-dir: the model cache must be writable by the agent's
 * user ("Permission denied" in the Xerotier documentation's troubleshooting table).
 */
import type { Check } from "../check.ts";
import { writableDir } from "../writable-dir.ts";

export const modelCacheDir: Check = {
  id: "model-cache-dir",
  group: "permissions",
  title: "Model cache folder is writable",
  run: (ctx) => writableDir(ctx, ctx.config.modelCacheDir, "XEROTIER_AGENT_MODEL_CACHE_DIR"),
};
