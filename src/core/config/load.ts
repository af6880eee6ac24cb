/**
 * @module Resolves the configuration from its sources, in this order of
 * precedence: command-line flag > environment > .env file (./.env or the
 * file named by XEROTIER_AGENT_ENV_FILE) > default. An empty value counts as
 * unset (compose files pass `${VAR:-}`). Returns the typed config and, for
 * each setting, where its value came from; a bad value throws ConfigError.
 */
import { existsSync } from "node:fs";
import { resolve } from "node:path";
import { parseEnv } from "node:util";
import * as v from "valibot";
import { FileLimits, readTextBoundedSync } from "../bounded-read.ts";
import { nearest } from "../suggest.ts";
import { ConfigError, type ConfigProblem } from "./errors.ts";
import type { RawValue, SettingMeta } from "./kit.ts";
import { type Config, ConfigSchema, type SettingKey, settings } from "./schema.ts";

export type Env = Record<string, string | undefined>;

export type ValueSource =
  | { kind: "flag"; flag: string }
  | { kind: "env" }
  | { kind: "file"; path: string }
  | { kind: "default" };

export interface SettingInfo extends SettingMeta {
  key: SettingKey;
  flag: string;
  /** The default as text, or undefined for "unset". */
  defaultValue: string | undefined;
}

export interface LoadedConfig {
  config: Config;
  sources: Record<SettingKey, ValueSource>;
  /** Non-fatal findings: unknown XEROTIER_AGENT_* variables (likely typos). */
  warnings: string[];
}

export interface LoadOptions {
  flags?: Partial<Record<SettingKey, RawValue | undefined>>;
  env?: Env;
  cwd?: string;
}

function flagFromEnv(env: string): string {
  return env
    .replace(/^XEROTIER_AGENT_/, "")
    .toLowerCase()
    .replaceAll("_", "-");
}

/** Every setting's metadata, in table order. */
export const settingInfos: readonly SettingInfo[] = (Object.keys(settings) as SettingKey[]).map((key) => {
  const schema = settings[key];
  const meta = v.getMetadata(schema) as unknown as SettingMeta;
  const def = v.getDefault(schema as v.GenericSchema) as unknown;
  const defaultValue = Array.isArray(def)
    ? def.length
      ? def.join(" ")
      : undefined
    : (def as string | undefined);
  return { ...meta, key, flag: meta.flag ?? flagFromEnv(meta.env), defaultValue };
});

export const settingByKey = new Map(settingInfos.map((s) => [s.key, s]));
const settingByEnv = new Map(settingInfos.map((s) => [s.env, s]));

export function describeSource(source: ValueSource): string {
  switch (source.kind) {
    case "flag":
      return `flag --${source.flag}`;
    case "env":
      return "environment";
    case "file":
      return `file ${source.path}`;
    case "default":
      return "default";
  }
}

function present(value: RawValue | undefined): value is RawValue {
  if (value === undefined) return false;
  return Array.isArray(value) ? value.length > 0 : value.trim() !== "";
}

function readEnvFile(path: string, explicit: boolean): Env {
  if (!existsSync(path)) {
    if (!explicit) return {};
    throw new ConfigError([
      {
        env: "XEROTIER_AGENT_ENV_FILE",
        value: path,
        message: "the file does not exist",
        source: "environment",
      },
    ]);
  }
  return parseEnv(readTextBoundedSync(path, { what: "the .env file", maxBytes: FileLimits.smallState }));
}

export function loadConfig(options: LoadOptions = {}): LoadedConfig {
  const env = options.env ?? process.env;
  const flags = options.flags ?? {};
  const cwd = options.cwd ?? process.cwd();

  const envFileSetting = flags.envFile ?? env.XEROTIER_AGENT_ENV_FILE;
  const explicitFile = present(envFileSetting);
  const filePath = resolve(cwd, explicitFile ? String(envFileSetting) : ".env");
  const fileEnv = readEnvFile(filePath, explicitFile);

  const raw: Record<string, RawValue> = {};
  const sources = {} as Record<SettingKey, ValueSource>;
  for (const s of settingInfos) {
    const fromFlag = flags[s.key];
    if (present(fromFlag)) {
      raw[s.key] = fromFlag;
      sources[s.key] = { kind: "flag", flag: s.flag };
    } else if (present(env[s.env])) {
      raw[s.key] = env[s.env] as string;
      sources[s.key] = { kind: "env" };
    } else if (present(fileEnv[s.env])) {
      raw[s.key] = fileEnv[s.env] as string;
      sources[s.key] = { kind: "file", path: filePath };
    } else {
      if (s.computeDefault) raw[s.key] = s.computeDefault(env);
      sources[s.key] = { kind: "default" };
    }
  }

  const result = v.safeParse(ConfigSchema, raw, { abortEarly: false });
  if (!result.success) {
    const problems: ConfigProblem[] = result.issues.map((issue) => {
      const key = issue.path?.[0]?.key as SettingKey | undefined;
      const info = key ? settingByKey.get(key) : undefined;
      if (!info || !key) {
        return { env: "configuration", value: undefined, message: issue.message, source: "schema" };
      }
      const given = raw[key];
      const value = given === undefined ? undefined : info.secret ? "***" : [given].flat().join(" ");
      return { env: info.env, value, message: issue.message, source: describeSource(sources[key]) };
    });
    throw new ConfigError(dedupe(problems));
  }

  const warnings: string[] = [];
  const known = [...settingByEnv.keys()];
  for (const [name, from] of [
    ...Object.keys(env).map((n) => [n, "environment"] as const),
    ...Object.keys(fileEnv).map((n) => [n, `file ${filePath}`] as const),
  ]) {
    if (name.startsWith("XEROTIER_AGENT_") && !settingByEnv.has(name)) {
      const guess = nearest(name, known, 6);
      warnings.push(`unknown variable ${name} (from ${from})${guess ? `; did you mean ${guess}?` : ""}`);
    }
  }
  return { config: result.output, sources, warnings };
}

/** A value that fails a pipe reports one problem, even when several checks disagree with it. */
function dedupe(problems: ConfigProblem[]): ConfigProblem[] {
  const seen = new Set<string>();
  return problems.filter((p) => {
    const id = `${p.env}\u0000${p.message}`;
    if (seen.has(id)) return false;
    seen.add(id);
    return true;
  });
}
