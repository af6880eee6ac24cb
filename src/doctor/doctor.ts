/**
 * @module The doctor as one call: pick the checks (all, or the ids and
 * groups asked for), run them against the configuration, and return the
 * report that both the human output and --json print. When the
 * configuration does not validate, config-valid reports why and the other
 * checks run against the best configuration that loads (the bad values
 * replaced by their defaults), so one typo does not hide every other finding.
 */
import { ConfigError, type ConfigProblem } from "../core/config/errors.ts";
import { type Env, type LoadedConfig, loadConfig, settingInfos } from "../core/config/load.ts";
import { UsageError } from "../core/errors.ts";
import { nearest } from "../core/suggest.ts";
import { ALL_CHECKS } from "./all-checks.ts";
import { CHECK_GROUPS, type Check, type CheckGroup } from "./check.ts";
import type { DoctorOptions } from "./context.ts";
import { type DoctorReport, type RunOptions, runChecks } from "./run-checks.ts";

/** Bumped only when a field changes meaning or disappears; new fields may be added. */
export const DOCTOR_SCHEMA_VERSION = 1;

export function selectChecks(selectors: readonly string[] = []): Check[] {
  if (selectors.length === 0) return [...ALL_CHECKS];
  const ids = ALL_CHECKS.map((c) => c.id);
  const chosen = new Set<Check>();
  for (const s of selectors) {
    if ((CHECK_GROUPS as readonly string[]).includes(s)) {
      for (const c of ALL_CHECKS) if (c.group === (s as CheckGroup)) chosen.add(c);
      continue;
    }
    const check = ALL_CHECKS.find((c) => c.id === s);
    if (!check) {
      const guess = nearest(s, [...ids, ...CHECK_GROUPS], 4);
      throw new UsageError(
        `unknown check '${s}'${guess ? `. Did you mean '${guess}'?` : ""}`,
        "Run 'xim doctor --list-checks' for the ids (a group name such as 'gpu' runs the whole group).",
      );
    }
    chosen.add(check);
  }
  return ALL_CHECKS.filter((c) => chosen.has(c));
}

/**
 * The configuration doctor checks against: the loaded one, or after a
 * ConfigError the same sources with each offending variable set to its
 * default (environment beats the .env file), else the defaults alone.
 */
export function configForDoctor(
  load: () => LoadedConfig,
  env: Env,
  cwd: string,
): { loaded: LoadedConfig; problems?: ConfigProblem[] } {
  try {
    return { loaded: load() };
  } catch (err) {
    if (!(err instanceof ConfigError)) throw err;
    const patched: Env = { ...env };
    for (const p of err.problems) {
      const info = settingInfos.find((s) => s.env === p.env);
      if (info) patched[p.env] = info.defaultValue ?? "";
    }
    try {
      return { loaded: loadConfig({ env: patched, cwd }), problems: err.problems };
    } catch {
      const paths: Env = {
        HOME: env.HOME,
        XDG_CONFIG_HOME: env.XDG_CONFIG_HOME,
        XDG_CACHE_HOME: env.XDG_CACHE_HOME,
      };
      return { loaded: loadConfig({ env: paths, cwd: "/nonexistent/xim-doctor" }), problems: err.problems };
    }
  }
}

export interface DoctorRunOptions
  extends Omit<RunOptions, keyof DoctorOptions>,
    Omit<DoctorOptions, "config"> {
  loaded: LoadedConfig;
  selectors?: readonly string[];
}

export function runDoctor(options: DoctorRunOptions): Promise<DoctorReport> {
  const { loaded, selectors, ...rest } = options;
  return runChecks(selectChecks(selectors), {
    ...rest,
    config: loaded.config,
    configWarnings: [...(options.configWarnings ?? []), ...loaded.warnings],
  });
}
