/**
 * @module LMCache (research/vllm.md §5, the seed's LMCache section): when
 * XEROTIER_AGENT_LMCACHE_ENABLED (or KV_CACHE_BACKEND=lmcache), the plan
 * carries lmcache_config.yaml (CPU cache 10 % of RAM, a disk tier sized by
 * XEROTIER_AGENT_LMCACHE_DISK_SIZE_GB, remote_url from
 * XEROTIER_AGENT_LMCACHE_REDIS_URL), LMCACHE_CONFIG_FILE and the
 * LMCacheConnectorV1 --kv-transfer-config. When LMCache is not installed
 * or the file cannot be written, the engine runs without it and says so.
 */
import { join } from "node:path";
import { stringify } from "yaml";
import { ensurePrivateDir, writeFileAtomic } from "../core/atomic-file.ts";
import { readTextHead } from "../core/bounded-read.ts";
import { xdgCacheHome } from "../core/paths.ts";
import { Secret } from "../core/secret.ts";
import { gib, type PlanBuilder } from "./builder.ts";
import type { Hardware } from "./hardware.ts";
import type { Plan, PlanConfig } from "./plan-types.ts";
import { type Env, runTool, which } from "./probes/exec.ts";

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

export interface LmcacheOptions {
  available: boolean | undefined;
  env: Record<string, string | undefined>;
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
  if (config.lmcacheDiskSizeGb !== undefined) {
    const dir = config.lmcacheDir ?? join(xdgCacheHome(o.env), "lmcache");
    // LMCache strips file:// and needs the trailing slash.
    doc.local_disk = `file://${dir.replace(/\/+$/, "")}/`;
    doc.max_local_disk_size = config.lmcacheDiskSizeGb;
    reasons.push(`disk tier ${config.lmcacheDiskSizeGb} GB in ${dir}`);
  } else {
    reasons.push("no disk tier (XEROTIER_AGENT_LMCACHE_DISK_SIZE_GB unset)");
  }
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

/** Remove LMCache from a plan (the file could not be written): the seed's graceful degradation. */
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

/** The Python interpreter behind a `vllm` launcher: its #! line, else python3. */
async function pythonOf(vllmPath: string, env: Env): Promise<string> {
  const resolved = await which(vllmPath, env);
  if (resolved) {
    try {
      const head = await readTextHead(resolved, 200, "the vLLM launcher");
      const m = /^#!\s*(\S+)(?:\s+(\S+))?/.exec(head);
      if (m) {
        // "#!/usr/bin/env python3" names the interpreter second.
        const exe = m[1].endsWith("/env") && m[2] ? m[2] : m[1];
        if (/python/.test(exe)) return exe;
      }
    } catch {
      // a binary launcher: fall through
    }
  }
  return "python3";
}

/** Whether vLLM's Python can import lmcache (a real `python -c` with a timeout); null when Python itself is missing. */
export async function probeLmcache(o: {
  vllmPath: string;
  env: Env;
  timeoutMs?: number;
}): Promise<boolean | null> {
  const python = await pythonOf(o.vllmPath, o.env);
  const r = await runTool(
    python,
    ["-c", "import importlib.util, sys; sys.exit(0 if importlib.util.find_spec('lmcache') else 3)"],
    o.env,
    o.timeoutMs ?? 15_000,
  );
  if (r.kind === "ok") return true;
  if (r.kind === "failed" && r.exitCode === 3) return false;
  return null;
}
