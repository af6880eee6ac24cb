/**
 * @module What a settings table says of each of its settings, read off the
 * schemas once: the metadata, the flag (derived from the variable unless
 * the setting names one), the default as text, and a secret's file form.
 * The node's table (load.ts) and the router's (src/router/settings.ts) are
 * described by it; --help, `xim config` and the README's tables print it.
 */
import * as v from "valibot";
import type { AnySettingMeta } from "./kit.ts";
import { secretFileEnv, secretFileFlag } from "./secret-file.ts";

export type DescribedSetting<K extends string, M extends AnySettingMeta> = M & {
  key: K;
  flag: string;
  /** The default as text, or undefined for "unset". */
  defaultValue: string | undefined;
  /** Secrets only: the file form's flag (join-key-file) and variable (..._JOIN_KEY_FILE). */
  fileFlag?: string;
  fileEnv?: string;
};

/** XEROTIER_AGENT_LOG_LEVEL with prefix XEROTIER_AGENT_ -> log-level. */
function flagFromEnv(env: string, envPrefix: string): string {
  return env
    .slice(env.startsWith(envPrefix) ? envPrefix.length : 0)
    .toLowerCase()
    .replaceAll("_", "-");
}

/** Every setting of `table`, in table order; a flag not named in its metadata is its variable less `envPrefix`. */
export function describeSettings<K extends string, M extends AnySettingMeta>(
  table: Record<K, v.GenericSchema>,
  envPrefix: string,
): DescribedSetting<K, M>[] {
  return (Object.keys(table) as K[]).map((key) => {
    const schema = table[key];
    const meta = v.getMetadata(schema) as unknown as M;
    const def = v.getDefault(schema) as unknown;
    const defaultValue = Array.isArray(def)
      ? def.length
        ? def.join(" ")
        : undefined
      : (def as string | undefined);
    const flag = meta.flag ?? flagFromEnv(meta.env, envPrefix);
    const fileForm = meta.secret ? { fileFlag: secretFileFlag(flag), fileEnv: secretFileEnv(meta.env) } : {};
    return { ...meta, key, flag, defaultValue, ...fileForm };
  });
}
