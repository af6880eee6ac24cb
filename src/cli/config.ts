/**
 * @module `xim config`: prints the effective configuration, each setting with
 * its value and where the value came from. Secrets show as ***.
 */
import { describeSource, type LoadedConfig, settingInfos } from "../core/config/load.ts";
import { type SettingKey, settings } from "../core/config/schema.ts";
import { ExitCode } from "../core/errors.ts";
import { Secret } from "../core/secret.ts";
import { defineCommand } from "./command.ts";
import { jsonOption } from "./options.ts";
import { formatTable } from "./output.ts";

export const MASK = "***";

export interface EffectiveSetting {
  key: SettingKey;
  env: string;
  group: string;
  value: unknown;
  default: string | null;
  source: string;
  secret: boolean;
}

function shown(value: unknown, secret: boolean): unknown {
  if (value === undefined) return null;
  if (secret || value instanceof Secret) return MASK;
  return value;
}

/** The effective configuration as data: the same list backs the table and --json. */
export function effectiveSettings(loaded: LoadedConfig): EffectiveSetting[] {
  return settingInfos.map((s) => ({
    key: s.key,
    env: s.env,
    group: s.group,
    value: shown(loaded.config[s.key], s.secret === true),
    default:
      s.secret && s.defaultValue !== undefined
        ? (s.defaultText ?? MASK)
        : (s.defaultText ?? s.defaultValue ?? null),
    source: describeSource(loaded.sources[s.key]),
    secret: s.secret === true,
  }));
}

function text(value: unknown): string {
  if (value === null) return "(auto/unset)";
  if (Array.isArray(value)) return value.length ? value.join(" ") : "(none)";
  if (typeof value === "object") {
    const entries = Object.entries(value as Record<string, string>);
    return entries.length ? entries.map(([k, val]) => `${k}=${val}`).join(" ") : "(none)";
  }
  return String(value);
}

export const configCommand = defineCommand({
  name: "config",
  summary: "Print the effective configuration: every setting, its value and its source",
  settings: Object.keys(settings) as SettingKey[],
  commonSettings: ["envFile", "configDir"],
  options: { json: jsonOption },
  examples: [
    "xim config",
    "xim config --json | jq '.settings[] | select(.source != \"default\")'",
    "XEROTIER_AGENT_LEASE_DURATION_MS=60000 xim config",
  ],
  async run(ctx) {
    const loaded = ctx.config();
    const list = effectiveSettings(loaded);
    if (ctx.options.json) {
      ctx.io.stdout(`${JSON.stringify({ settings: list, warnings: loaded.warnings }, null, 2)}\n`);
      return ExitCode.ok;
    }
    let group = "";
    const rows: string[][] = [];
    for (const s of list) {
      if (s.group !== group) {
        group = s.group;
        rows.push([`[${group}]`, "", ""]);
      }
      rows.push([`  ${s.env}`, text(s.value), s.source]);
    }
    ctx.io.stdout(formatTable(["SETTING", "VALUE", "SOURCE"], rows));
    for (const w of loaded.warnings) ctx.io.stderr(`warning: ${w}\n`);
    return ExitCode.ok;
  },
});
