/**
 * @module Resolves the configuration from its sources, in this order of
 * precedence: command-line flag > environment > .env file (./.env or the
 * file named by XEROTIER_AGENT_ENV_FILE) > default. An empty value counts as
 * unset (compose files pass `${VAR:-}`). A secret setting may also come
 * from a file (`--join-key-file PATH` right after its flag,
 * XEROTIER_AGENT_JOIN_KEY_FILE right after its variable; secret-file.ts),
 * and given as a flag it is warned about: argv is public to local users.
 * Returns the typed config and, for each setting, where its value came
 * from, and warnings; a bad value throws ConfigError.
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
import { readSecretFile } from "./secret-file.ts";
import { type DescribedSetting, describeSettings } from "./setting-info.ts";

export type Env = Record<string, string | undefined>;

export type ValueSource =
  | { kind: "flag"; flag: string }
  | { kind: "env" }
  | { kind: "file"; path: string }
  | { kind: "default" };

export type SettingInfo = DescribedSetting<SettingKey, SettingMeta>;

export interface LoadedConfig {
  config: Config;
  sources: Record<SettingKey, ValueSource>;
  /** Non-fatal findings: unknown XEROTIER_AGENT_* variables (likely typos). */
  warnings: string[];
}

export interface LoadOptions {
  flags?: Partial<Record<SettingKey, RawValue | undefined>>;
  /** Paths given with a secret's `--<flag>-file`. */
  fileFlags?: Partial<Record<SettingKey, string | undefined>>;
  env?: Env;
  cwd?: string;
}

/** Every setting's metadata, in table order. */
export const settingInfos: readonly SettingInfo[] = describeSettings<SettingKey, SettingMeta>(
  settings,
  "XEROTIER_AGENT_",
);

export const settingByKey = new Map(settingInfos.map((s) => [s.key, s]));
const settingByEnv = new Map(settingInfos.map((s) => [s.env, s]));
const fileEnvNames = new Set(settingInfos.flatMap((s) => (s.fileEnv ? [s.fileEnv] : [])));

/** Variable names of a --vllm-env entry that look like credentials (HF_TOKEN, AWS_SECRET_ACCESS_KEY ...). */
const CREDENTIAL_NAME = /TOKEN|KEY|SECRET|PASSWORD|CREDENTIAL/i;

function onCommandLine(what: string, instead: string): string {
  return `${what} on the command line, where every local user can read it (ps, /proc/PID/cmdline) while the process runs; ${instead}`;
}

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

/** A value given at all: an empty one counts as unset (compose files pass `${VAR:-}`). */
export function present(value: RawValue | undefined): value is RawValue {
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
  const fileProblems: ConfigProblem[] = [];
  const warnings: string[] = [];
  /** A secret's file form: its content becomes the raw value, or a problem is recorded. */
  const fromSecretFile = (s: SettingInfo, given: string, name: string, source: string): void => {
    const path = resolve(cwd, given);
    const read = readSecretFile(path);
    if ("problem" in read) fileProblems.push({ env: name, value: path, message: read.problem, source });
    else raw[s.key] = read.value;
    sources[s.key] = { kind: "file", path };
  };
  for (const s of settingInfos) {
    const fromFlag = flags[s.key];
    const fileFlag = options.fileFlags?.[s.key];
    if (present(fromFlag)) {
      raw[s.key] = fromFlag;
      sources[s.key] = { kind: "flag", flag: s.flag };
      if (s.secret && s.fileFlag)
        warnings.push(
          onCommandLine(`--${s.flag} puts a secret`, `set ${s.env} or use --${s.fileFlag} PATH instead`),
        );
    } else if (s.fileFlag && present(fileFlag)) {
      fromSecretFile(s, fileFlag, `--${s.fileFlag}`, `flag --${s.fileFlag}`);
    } else if (present(env[s.env])) {
      raw[s.key] = env[s.env] as string;
      sources[s.key] = { kind: "env" };
    } else if (s.fileEnv && present(env[s.fileEnv])) {
      fromSecretFile(s, env[s.fileEnv] as string, s.fileEnv, "environment");
    } else if (present(fileEnv[s.env])) {
      raw[s.key] = fileEnv[s.env] as string;
      sources[s.key] = { kind: "file", path: filePath };
    } else if (s.fileEnv && present(fileEnv[s.fileEnv])) {
      fromSecretFile(s, fileEnv[s.fileEnv] as string, s.fileEnv, `file ${filePath}`);
    } else {
      if (s.computeDefault) raw[s.key] = s.computeDefault(env);
      sources[s.key] = { kind: "default" };
    }
  }

  const result = v.safeParse(ConfigSchema, raw, { abortEarly: false });
  if (fileProblems.length > 0 && result.success) throw new ConfigError(fileProblems);
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
    throw new ConfigError(dedupe([...fileProblems, ...problems]));
  }

  const credentials = Object.keys(result.output.vllmEnv).filter((name) => CREDENTIAL_NAME.test(name));
  if (sources.vllmEnv.kind === "flag" && credentials.length > 0) {
    warnings.push(
      onCommandLine(
        `--vllm-env puts ${credentials.join(", ")}`,
        "set XEROTIER_AGENT_VLLM_ENV in the environment or the .env file instead",
      ),
    );
  }
  const known = [...settingByEnv.keys(), ...fileEnvNames];
  for (const [name, from] of [
    ...Object.keys(env).map((n) => [n, "environment"] as const),
    ...Object.keys(fileEnv).map((n) => [n, `file ${filePath}`] as const),
  ]) {
    if (name.startsWith("XEROTIER_AGENT_") && !settingByEnv.has(name) && !fileEnvNames.has(name)) {
      const guess = nearest(name, known, 6);
      warnings.push(`unknown variable ${name} (from ${from})${guess ? `; did you mean ${guess}?` : ""}`);
    }
  }
  return { config: result.output, sources, warnings };
}

/** A value that fails a pipe reports one problem, even when several checks disagree with it. */
export function dedupe(problems: ConfigProblem[]): ConfigProblem[] {
  const seen = new Set<string>();
  return problems.filter((p) => {
    const id = `${p.env}\u0000${p.message}`;
    if (seen.has(id)) return false;
    seen.add(id);
    return true;
  });
}
