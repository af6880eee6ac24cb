/**
 * @module LMCache (research/vllm.md §5, the Xerotier documentation's LMCache section): when
 * XEROTIER_AGENT_LMCACHE_ENABLED (or KV_CACHE_BACKEND=lmcache), the plan
 * carries lmcache_config.yaml (CPU cache 10 % of RAM, a disk tier sized by
 * XEROTIER_AGENT_LMCACHE_DISK_SIZE_GB or, unset, from the free space of its
 * folder (autoDiskTierGb), remote_url from
 * XEROTIER_AGENT_LMCACHE_REDIS_URL), LMCACHE_CONFIG_FILE and the
 * LMCacheConnectorV1 --kv-transfer-config. When LMCache is not installed
 * or the file cannot be written, the engine runs without it and says so.
 */
import { statfs } from "node:fs/promises";
import { dirname, join, resolve } from "node:path";
import { stringify } from "yaml";
import { ensurePrivateDir, writeFileAtomic } from "../core/atomic-file.ts";
import { xdgCacheHome } from "../core/paths.ts";
import { Secret } from "../core/secret.ts";
import { type Env, runTool } from "../hardware/run-tool.ts";
import type { Hardware } from "../hardware/types.ts";
import { gib, type PlanBuilder } from "./builder.ts";
import type { Plan, PlanConfig } from "./plan-types.ts";
import { vllmPython } from "./probes/vllm-python.ts";

export const LMCACHE_FILE = "lmcache_config.yaml";
export const KV_TRANSFER_CONFIG = JSON.stringify({ kv_connector: "LMCacheConnectorV1", kv_role: "kv_both" });
export const SALT_WARNING =
  "LMCache's LMCacheConnectorV1 ignores cache_salt: tenants with different salts can reuse each other's offloaded KV cache (LMCache#2878); turn LMCache off where tenant isolation matters";

/** A URL with its user:password (including Redis's user-less ":password@") replaced by ***. */
export function maskUrl(url: string): string {
  return url.replace(/^([a-z][a-z0-9+.-]*:\/\/)[^/@\s]*@/i, "$1***@");
}

export function lmcacheWanted(config: PlanConfig): boolean {
  return config.lmcacheEnabled || config.kvCacheBackend === "lmcache";
}

/** CPU cache per engine worker in GB: 10 % of RAM shared by the TP ranks (each holds its own pinned buffer). */
export function lmcacheCpuGb(totalBytes: number | null, tp: number): number {
  if (totalBytes === null) return 5;
  return Math.max(1, Math.round(((totalBytes * 0.1) / 1e9 / Math.max(1, tp)) * 10) / 10);
}

/** The automatic disk tier's ceiling: the top of the Xerotier documentation's "50-100GB for disk cache". */
export const AUTO_DISK_TIER_MAX_GB = 100;

/**
 * The disk tier when XEROTIER_AGENT_LMCACHE_DISK_SIZE_GB is unset: half the
 * free space of its folder's file system (the other half stays for models
 * and logs), at most AUTO_DISK_TIER_MAX_GB, in whole GB; 0 (no disk tier)
 * below 1 GB.
 */
export function autoDiskTierGb(freeBytes: number): number {
  return Math.min(AUTO_DISK_TIER_MAX_GB, Math.floor(freeBytes / 2 / 1e9));
}

/** The disk tier's folder: XEROTIER_AGENT_LMCACHE_DIR, else $XDG_CACHE_HOME/lmcache (the folder the compose files mount). */
export function lmcacheDiskDir(
  config: Pick<PlanConfig, "lmcacheDir">,
  env: Record<string, string | undefined>,
): string {
  return config.lmcacheDir ?? join(xdgCacheHome(env), "lmcache");
}

/** Free bytes on the file system of the disk tier's folder (or its nearest existing parent); null when unreadable. */
export async function lmcacheDiskFree(dir: string): Promise<number | null> {
  let p = resolve(dir);
  for (;;) {
    try {
      const fs = await statfs(p);
      return fs.bavail * fs.bsize;
    } catch {
      const parent = dirname(p);
      if (parent === p) return null;
      p = parent;
    }
  }
}

export interface LmcacheOptions {
  available: boolean | undefined;
  env: Record<string, string | undefined>;
  /** Free bytes where the disk tier goes (lmcacheDiskFree); undefined or null: unknown. */
  diskFreeBytes?: number | null;
}

/** The disk tier in GB (0: none) and the reason, from the setting or the free space. */
function diskTier(config: PlanConfig, dir: string, freeBytes: number | null | undefined): [number, string] {
  const size = config.lmcacheDiskSizeGb;
  if (size === 0) return [0, "no disk tier (XEROTIER_AGENT_LMCACHE_DISK_SIZE_GB=0)"];
  if (size !== undefined)
    return [size, `disk tier ${size} GB in ${dir} (XEROTIER_AGENT_LMCACHE_DISK_SIZE_GB)`];
  if (freeBytes === undefined || freeBytes === null)
    return [0, `no disk tier: the free space of ${dir} is unknown (set XEROTIER_AGENT_LMCACHE_DISK_SIZE_GB)`];
  const auto = autoDiskTierGb(freeBytes);
  const free = `${Math.floor(freeBytes / 1e9)} GB free`;
  if (auto === 0) return [0, `no disk tier: only ${free} for ${dir}`];
  return [
    auto,
    `disk tier ${auto} GB in ${dir}: half of the ${free} there, at most ${AUTO_DISK_TIER_MAX_GB} GB (XEROTIER_AGENT_LMCACHE_DISK_SIZE_GB overrides, 0 turns it off)`,
  ];
}

/** Adds LMCache to the plan; returns the CPU bytes it pins (for the CPU plan's arithmetic). */
export function planLmcache(
  b: PlanBuilder,
  hw: Hardware,
  config: PlanConfig,
  tp: number,
  o: LmcacheOptions,
): number {
  if (!lmcacheWanted(config)) return 0;
  const why = config.lmcacheEnabled
    ? "XEROTIER_AGENT_LMCACHE_ENABLED"
    : "XEROTIER_AGENT_KV_CACHE_BACKEND=lmcache";
  if (o.available === false) {
    b.note(
      "LMCache",
      "off",
      `${why} is set but the lmcache Python package is not importable by vLLM: running without it (graceful degradation)`,
    );
    b.warn(
      "LMCache is enabled but not installed (python cannot import lmcache); the engine runs without KV cache sharing",
    );
    return 0;
  }
  const cpuGb = lmcacheCpuGb(hw.memory.totalBytes, tp);
  const doc: Record<string, unknown> = { chunk_size: 256, local_cpu: true, max_local_cpu_size: cpuGb };
  const reasons = [
    `CPU cache ${cpuGb} GB per worker: 10 % of ${hw.memory.totalBytes === null ? "RAM (unknown: LMCache's default 5 GB)" : gib(hw.memory.totalBytes)}${tp > 1 ? ` across ${tp} TP workers` : ""}`,
  ];
  const dir = lmcacheDiskDir(config, o.env);
  const [diskGb, diskReason] = diskTier(config, dir, o.diskFreeBytes);
  if (diskGb > 0) {
    // LMCache strips file:// and needs the trailing slash.
    doc.local_disk = `file://${dir.replace(/\/+$/, "")}/`;
    doc.max_local_disk_size = diskGb;
  }
  reasons.push(diskReason);
  let secretContent: Secret | undefined;
  let content: string;
  if (config.lmcacheRedisUrl) {
    const url = config.lmcacheRedisUrl.reveal();
    doc.remote_url = url;
    doc.remote_serde = "naive";
    secretContent = new Secret(stringify(doc));
    content = stringify({ ...doc, remote_url: maskUrl(url) });
    reasons.push(`shared through ${maskUrl(url)}`);
  } else {
    content = stringify(doc);
    reasons.push("local only (XEROTIER_AGENT_LMCACHE_REDIS_URL unset)");
  }
  const path = join(config.configDir, LMCACHE_FILE);
  b.files.push({
    path,
    purpose: "LMCache configuration (LMCACHE_CONFIG_FILE)",
    content,
    ...(secretContent ? { secretContent } : {}),
  });
  b.note("LMCache", "on", `${why}: ${reasons.join("; ")}`, "explicit");
  b.setEnv("LMCACHE_CONFIG_FILE", path, "LMCache reads its configuration from this file", "explicit");
  b.flag(
    "--kv-transfer-config",
    KV_TRANSFER_CONFIG,
    "LMCache's vLLM connector, storing and loading KV (kv_both)",
    "explicit",
  );
  b.warn(SALT_WARNING);
  return Math.round(cpuGb * 1e9 * Math.max(1, tp));
}

/** Remove LMCache from a plan (the file could not be written): the graceful degradation the Xerotier documentation describes. */
export function withoutLmcache(plan: Plan, why: string): Plan {
  const args: string[] = [];
  for (let i = 0; i < plan.args.length; i++) {
    if (plan.args[i] === "--kv-transfer-config" && plan.args[i + 1] === KV_TRANSFER_CONFIG) {
      i++;
      continue;
    }
    args.push(plan.args[i]);
  }
  const env = { ...plan.env };
  delete env.LMCACHE_CONFIG_FILE;
  return {
    ...plan,
    args,
    env,
    files: plan.files.filter((f) => !f.path.endsWith(LMCACHE_FILE)),
    decisions: [
      ...plan.decisions.filter(
        (d) =>
          d.setting !== "LMCACHE_CONFIG_FILE" &&
          d.setting !== "--kv-transfer-config" &&
          d.setting !== "LMCache",
      ),
      {
        setting: "LMCache",
        value: "off",
        reason: `${why}: running without it (graceful degradation)`,
        source: "auto",
      },
    ],
    warnings: [...plan.warnings.filter((w) => w !== SALT_WARNING), `LMCache disabled: ${why}`],
  };
}

/**
 * Write the plan's files (0600 in a 0700 folder). A file that cannot be
 * written drops its feature from the plan with a warning instead of
 * failing the start; the returned plan is the one to run.
 */
export async function writePlanFiles(plan: Plan): Promise<Plan> {
  let out = plan;
  for (const file of plan.files) {
    try {
      await ensurePrivateDir(join(file.path, ".."));
      await writeFileAtomic(file.path, file.secretContent?.reveal() ?? file.content);
    } catch (err) {
      if (file.path.endsWith(LMCACHE_FILE)) {
        out = withoutLmcache(
          out,
          `cannot write ${file.path} (${(err as Error).message}); make the folder writable`,
        );
      } else {
        throw err;
      }
    }
  }
  return out;
}

/** Whether vLLM's Python can import lmcache (a real `python -c` with a timeout); null when Python itself is missing. */
export async function probeLmcache(o: {
  vllmPath: string;
  env: Env;
  timeoutMs?: number;
}): Promise<boolean | null> {
  const python = await vllmPython(o.vllmPath, o.env);
  const r = await runTool(
    python,
    ["-c", "import importlib.util, sys; sys.exit(0 if importlib.util.find_spec('lmcache') else 3)"],
    { env: o.env, timeoutMs: o.timeoutMs ?? 15_000 },
  );
  if (r.kind === "ok") return true;
  if (r.kind === "failed" && r.exitCode === 3) return false;
  return null;
}
