/**
 * @module What a doctor check may look at: the effective configuration (or,
 * when it does not validate, the best configuration that could be loaded
 * plus the problems), the environment its tools run with, and the roots of
 * /proc, /dev and /data/xerotier, which tests point at temporary folders.
 * Probes that several checks share (nvidia-smi's answer) run once per doctor
 * run through `shared`.
 */
import type { ConfigProblem } from "../core/config/errors.ts";
import type { Config } from "../core/config/schema.ts";

export type Env = Record<string, string | undefined>;

export interface DoctorOptions {
  config: Config;
  /** Set when the configuration did not validate; `config` is then a fallback. */
  configProblems?: ConfigProblem[];
  /** Non-fatal findings of the loader (unknown XEROTIER_AGENT_* variables). */
  configWarnings?: string[];
  /** Environment of the tools the checks run (PATH) and of variables such as LMCACHE_CONFIG_FILE. */
  env: Env;
  /** Root of procfs; default /proc. */
  procRoot?: string;
  /** Root of sysfs (NUMA nodes, CPU topology); default /sys. */
  sysRoot?: string;
  /** Root of the device nodes; default /dev. */
  devRoot?: string;
  /** The host folder the compose files mount into the container; default /data/xerotier. */
  dataDir?: string;
  /** Root under which container markers (/.dockerenv, /run/.containerenv) are looked for; default /. */
  fsRoot?: string;
  /** Whether this runs inside a container; detected when omitted. */
  inContainer?: boolean;
  /** The user the agent runs as; default the current process's. */
  uid?: number;
  /** The agent's primary group (for the chown fixes); default the current process's. */
  gid?: number;
  gids?: number[];
}

export interface DoctorContext {
  config: Config;
  configProblems: ConfigProblem[] | undefined;
  configWarnings: string[];
  env: Env;
  procRoot: string;
  sysRoot: string;
  devRoot: string;
  dataDir: string;
  fsRoot: string;
  inContainer: boolean | undefined;
  uid: number;
  gid: number;
  gids: number[];
  /** Runs `probe` once per doctor run and hands every caller the same promise. */
  shared<T>(key: string, probe: (signal: AbortSignal) => Promise<T>): Promise<T>;
}

export function createContext(options: DoctorOptions, runSignal: AbortSignal): DoctorContext {
  const cache = new Map<string, Promise<unknown>>();
  return {
    config: options.config,
    configProblems: options.configProblems,
    configWarnings: options.configWarnings ?? [],
    env: options.env,
    procRoot: options.procRoot ?? "/proc",
    sysRoot: options.sysRoot ?? "/sys",
    devRoot: options.devRoot ?? "/dev",
    dataDir: options.dataDir ?? "/data/xerotier",
    fsRoot: options.fsRoot ?? "/",
    inContainer: options.inContainer,
    uid: options.uid ?? process.getuid?.() ?? 0,
    gid: options.gid ?? (options.uid === undefined ? process.getgid?.() : undefined) ?? options.uid ?? 0,
    gids: options.gids ?? (options.uid === undefined ? process.getgroups?.() : undefined) ?? [],
    shared<T>(key: string, probe: (signal: AbortSignal) => Promise<T>): Promise<T> {
      let p = cache.get(key) as Promise<T> | undefined;
      if (!p) {
        p = probe(runSignal);
        cache.set(key, p);
      }
      return p;
    },
  };
}
