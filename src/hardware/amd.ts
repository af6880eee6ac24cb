/**
 * @module AMD probe: `amd-smi static --json` (name and VRAM per GPU), or
 * `rocm-smi --showproductname --showuse --showmeminfo vram --json` where
 * amd-smi is absent. Honours HIP_VISIBLE_DEVICES (and ROCR_VISIBLE_DEVICES).
 * Failures become findings.
 */

import { type Env, firstLine, runTool, type ToolResult } from "./run-tool.ts";
import type { Finding, Gpu, Topology } from "./types.ts";

export interface AmdProbe {
  present: boolean;
  gpus: Gpu[];
  topology: Topology;
  findings: Finding[];
}

function describe(result: ToolResult): string {
  switch (result.kind) {
    case "ok":
      return "answered";
    case "missing":
      return "not found";
    case "timeout":
      return `did not answer within ${result.timeoutMs} ms`;
    case "failed":
      return `failed (${result.reason}): ${firstLine(`${result.stdout}\n${result.stderr}`)}`;
  }
}

type Json = Record<string, unknown>;

function obj(value: unknown): Json {
  return value && typeof value === "object" && !Array.isArray(value) ? (value as Json) : {};
}

function toMiB(value: number, unit: string): number {
  switch (unit.toUpperCase()) {
    case "B":
      return Math.floor(value / 2 ** 20);
    case "KB":
      return Math.floor(value / 1024);
    case "GB":
      return value * 1024;
    default:
      // amd-smi reports VRAM "MB" meaning MiB (196592 for a 192 GiB MI300X).
      return value;
  }
}

/** Parse `amd-smi static --json`: a top-level array (older) or {"gpu_data": [...]} (newer). */
export function parseAmdSmiStatic(text: string): Gpu[] {
  const parsed: unknown = JSON.parse(text);
  const list = Array.isArray(parsed) ? parsed : (obj(parsed).gpu_data as unknown[] | undefined);
  if (!Array.isArray(list)) return [];
  const gpus: Gpu[] = [];
  list.forEach((entry, i) => {
    const e = obj(entry);
    const asic = obj(e.asic);
    const size = obj(obj(e.vram).size);
    const value = typeof size.value === "number" ? size.value : Number(size.value);
    const memory = Number.isFinite(value) ? toMiB(value, String(size.unit ?? "MB")) : 0;
    const driver = obj(e.driver);
    gpus.push({
      vendor: "amd",
      index: typeof e.gpu === "number" ? e.gpu : i,
      name: String(asic.market_name ?? "AMD GPU"),
      memoryTotalMiB: memory,
      memoryFreeMiB: null,
      boardMemoryMiB: memory,
      computeCapability: null,
      driverVersion: typeof driver.version === "string" ? driver.version : null,
      uuid: typeof asic.asic_serial === "string" ? asic.asic_serial : null,
      migEnabled: false,
      migSlice: null,
    });
  });
  return gpus;
}

/** Parse `rocm-smi --showproductname --showuse --showmeminfo vram --json`: {"card0": {...}}. */
export function parseRocmSmiJson(text: string): Gpu[] {
  const parsed = obj(JSON.parse(text));
  const gpus: Gpu[] = [];
  for (const [key, value] of Object.entries(parsed)) {
    const m = /^card(\d+)$/.exec(key);
    if (!m) continue;
    const card = obj(value);
    const total = Number(card["VRAM Total Memory (B)"]);
    const used = Number(card["VRAM Total Used Memory (B)"]);
    const totalMiB = Number.isFinite(total) ? Math.floor(total / 2 ** 20) : 0;
    gpus.push({
      vendor: "amd",
      index: Number(m[1]),
      name: String(card["Card Series"] ?? card["Card series"] ?? "AMD GPU"),
      memoryTotalMiB: totalMiB,
      memoryFreeMiB:
        Number.isFinite(used) && Number.isFinite(total) ? Math.floor((total - used) / 2 ** 20) : null,
      boardMemoryMiB: totalMiB,
      computeCapability: typeof card["GFX Version"] === "string" ? (card["GFX Version"] as string) : null,
      driverVersion: null,
      uuid: null,
      migEnabled: false,
      migSlice: null,
    });
  }
  return gpus.sort((a, b) => a.index - b.index);
}

function applyVisible(all: Gpu[], env: Env): { gpus: Gpu[]; findings: Finding[] } {
  const name =
    env.HIP_VISIBLE_DEVICES !== undefined
      ? "HIP_VISIBLE_DEVICES"
      : env.ROCR_VISIBLE_DEVICES !== undefined
        ? "ROCR_VISIBLE_DEVICES"
        : null;
  if (!name) return { gpus: all, findings: [] };
  const value = env[name] ?? "";
  const tokens = value
    .split(",")
    .map((t) => t.trim())
    .filter((t) => t.length > 0);
  const gpus: Gpu[] = [];
  for (const t of tokens) {
    const g = /^\d+$/.test(t) ? all.find((x) => x.index === Number(t)) : undefined;
    if (!g) {
      return {
        gpus,
        findings: [
          {
            source: "amd",
            severity: "warning",
            message: `${name} names ${t}, which the AMD tools do not list; devices after it are ignored`,
          },
        ],
      };
    }
    gpus.push(g);
  }
  const findings: Finding[] =
    gpus.length === 0
      ? [
          {
            source: "amd",
            severity: "warning",
            message: `${name}=${JSON.stringify(value)} hides every AMD GPU`,
          },
        ]
      : [];
  return { gpus, findings };
}

export async function probeAmd(env: Env, timeoutMs: number): Promise<AmdProbe> {
  const findings: Finding[] = [];
  let all: Gpu[] = [];
  let present = false;
  const amdSmi = await runTool("amd-smi", ["static", "--json"], { env, timeoutMs });
  if (amdSmi.kind === "ok") {
    present = true;
    try {
      all = parseAmdSmiStatic(amdSmi.stdout);
    } catch (err) {
      findings.push({
        source: "amd-smi",
        severity: "warning",
        message: `amd-smi static --json printed unreadable JSON: ${String(err)}`,
      });
    }
  } else {
    if (amdSmi.kind !== "missing") {
      present = true;
      findings.push({ source: "amd-smi", severity: "warning", message: `amd-smi ${describe(amdSmi)}` });
    }
    const rocm = await runTool(
      "rocm-smi",
      ["--showproductname", "--showuse", "--showmeminfo", "vram", "--json"],
      { env, timeoutMs },
    );
    if (rocm.kind === "ok") {
      present = true;
      try {
        all = parseRocmSmiJson(rocm.stdout);
      } catch (err) {
        findings.push({
          source: "rocm-smi",
          severity: "warning",
          message: `rocm-smi --json printed unreadable JSON: ${String(err)}`,
        });
      }
    } else if (rocm.kind !== "missing") {
      present = true;
      findings.push({ source: "rocm-smi", severity: "warning", message: `rocm-smi ${describe(rocm)}` });
    } else if (amdSmi.kind === "missing") {
      findings.push({
        source: "amd-smi",
        severity: "info",
        message: "no AMD ROCm tools (amd-smi and rocm-smi not found)",
      });
    }
  }
  const visible = applyVisible(all, env);
  findings.push(...visible.findings);
  const n = visible.gpus.length;
  const topology: Topology =
    n <= 1
      ? { kind: "single", links: [], detail: n === 1 ? "one GPU" : "no GPU" }
      : /MI3\d\d|MI2\d\d/i.test(visible.gpus[0].name)
        ? {
            kind: "xgmi",
            links: [],
            detail: "Instinct MI200/MI300 GPUs are linked by Infinity Fabric (xGMI)",
          }
        : { kind: "unknown", links: [], detail: "AMD GPU links not measured" };
  return { present, gpus: visible.gpus, topology, findings };
}
