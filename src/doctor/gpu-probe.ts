/**
 * @module Asks the GPU tools once per doctor run and keeps the answers for
 * every GPU check: `nvidia-smi` (the inventory query, `-q` for driver, CUDA,
 * persistence and MIG modes, fabric state and memory health, `-L` for MIG
 * devices) and `amd-smi static --json`.
 * A failing nvidia-smi is classified by src/hardware/nvidia-failure.ts (the
 * NVML "Unknown Error" of the container toolkit, a driver/library mismatch,
 * no driver, no device, a lost GPU).
 * The inventory and the CPU/memory facts come from the planner's detection
 * (src/hardware/detect.ts), run once per doctor run too.
 */
import { join } from "node:path";
import { parseAmdSmiStatic } from "../hardware/amd.ts";
import { detectHardware, type Gpu, type Hardware } from "../hardware/detect.ts";
import { NVIDIA_QUERY_ARGS, parseQueryCsv } from "../hardware/nvidia.ts";
import { classifyNvidiaSmiFailure, type NvidiaSmiFailure } from "../hardware/nvidia-failure.ts";
import { runTool, type ToolResult } from "../hardware/run-tool.ts";
import type { DoctorContext } from "./context.ts";

export const GPU_TOOL_TIMEOUT_MS = 4000;

/** One GPU section of `nvidia-smi -q`. */
export interface NvidiaGpuDetails {
  busId: string;
  name: string;
  persistenceMode?: string;
  migCurrent?: string;
  migPending?: string;
  /** NVSwitch fabric (Fabric Manager): "Completed"/"Success" when trained, "N/A" without NVSwitch. */
  fabricState?: string;
  fabricStatus?: string;
  /** Row remapping: a pending remap needs a GPU reset; a failed one means bad memory. */
  remapPending?: string;
  remapFailure?: string;
  /** Volatile (since the last driver load) uncorrectable DRAM ECC errors. */
  dramUncorrectable?: string;
}

export type NvidiaProbe =
  | { state: "missing" }
  | { state: "timeout"; reason: string }
  | { state: "error"; kind: NvidiaSmiFailure; message: string; exitCode: number | null }
  | {
      state: "ok";
      gpus: Gpu[];
      driverVersion?: string;
      cudaVersion?: string;
      /** Undefined when `nvidia-smi -q` gave nothing usable. */
      details?: NvidiaGpuDetails[];
      /** MIG device lines of `nvidia-smi -L`. */
      migDevices: string[];
    };

/**
 * `nvidia-smi -q` is an indented "Key : Value" tree. Returns the top-level
 * values and, per GPU section, its values keyed by their path
 * ("MIG Mode/Current"); the first occurrence of a path wins.
 */
export function parseNvidiaQ(text: string): {
  top: Record<string, string>;
  gpus: Array<{ busId: string; values: Record<string, string> }>;
} {
  const top: Record<string, string> = {};
  const gpus: Array<{ busId: string; values: Record<string, string> }> = [];
  let current: { busId: string; values: Record<string, string> } | undefined;
  let stack: Array<{ indent: number; name: string }> = [];
  for (const raw of text.split("\n")) {
    if (raw.trim() === "" || raw.startsWith("=")) continue;
    const indent = raw.length - raw.trimStart().length;
    const line = raw.trim();
    const sep = line.indexOf(" : ");
    const key = (sep >= 0 ? line.slice(0, sep) : line.replace(/\s*:$/, "")).trim();
    const value = sep >= 0 ? line.slice(sep + 3).trim() : undefined;
    if (indent === 0) {
      const gpu = /^GPU\s+([0-9A-Fa-f:.]+)$/.exec(line);
      if (gpu) {
        current = { busId: gpu[1], values: {} };
        gpus.push(current);
        stack = [];
      } else {
        if (value !== undefined) top[key] = value;
        current = undefined;
      }
      continue;
    }
    if (!current) continue;
    while (stack.length && stack[stack.length - 1].indent >= indent) stack.pop();
    if (value === undefined) {
      stack.push({ indent, name: key });
      continue;
    }
    const path = [...stack.map((s) => s.name), key].join("/");
    if (!(path in current.values)) current.values[path] = value;
  }
  return { top, gpus };
}

function detailsFromQ(text: string) {
  const parsed = parseNvidiaQ(text);
  const details: NvidiaGpuDetails[] = parsed.gpus.map((g) => ({
    busId: g.busId,
    name: g.values["Product Name"] ?? "unknown",
    persistenceMode: g.values["Persistence Mode"],
    migCurrent: g.values["MIG Mode/Current"],
    migPending: g.values["MIG Mode/Pending"],
    fabricState: g.values["Fabric/State"],
    fabricStatus: g.values["Fabric/Status"],
    remapPending: g.values["Remapped Rows/Pending"],
    remapFailure: g.values["Remapped Rows/Remapping Failure Occurred"],
    dramUncorrectable: g.values["ECC Errors/Volatile/DRAM Uncorrectable"],
  }));
  return { details, driverVersion: parsed.top["Driver Version"], cudaVersion: parsed.top["CUDA Version"] };
}

function errorOf(result: Exclude<ToolResult, { kind: "ok" }>): NvidiaProbe {
  if (result.kind === "missing") return { state: "missing" };
  if (result.kind === "timeout") return { state: "timeout", reason: result.reason };
  const text = `${result.stdout}\n${result.stderr}`.trim();
  const message = text
    .split("\n")
    .filter((l) => l.trim())
    .slice(0, 2)
    .join(" ")
    .trim();
  return {
    state: "error",
    kind: classifyNvidiaSmiFailure(text, result.exitCode),
    message: message || result.reason,
    exitCode: result.exitCode,
  };
}

export function probeNvidia(ctx: DoctorContext): Promise<NvidiaProbe> {
  return ctx.shared("nvidia-smi", async (signal) => {
    const opts = { env: ctx.env, timeoutMs: GPU_TOOL_TIMEOUT_MS, signal };
    const query = await runTool("nvidia-smi", NVIDIA_QUERY_ARGS, opts);
    if (query.kind !== "ok") return errorOf(query);
    const gpus = parseQueryCsv(query.stdout);
    if (gpus.length === 0) {
      return { state: "error", kind: "no-devices", message: "nvidia-smi listed no GPU", exitCode: 0 };
    }
    const [q, list] = await Promise.all([
      runTool("nvidia-smi", ["-q"], opts),
      runTool("nvidia-smi", ["-L"], opts),
    ]);
    const fromQ = q.kind === "ok" ? detailsFromQ(q.stdout) : undefined;
    const migDevices =
      list.kind === "ok"
        ? list.stdout
            .split("\n")
            .map((l) => l.trim())
            .filter((l) => l.startsWith("MIG "))
        : [];
    return {
      state: "ok",
      gpus,
      driverVersion: fromQ?.driverVersion ?? gpus[0].driverVersion ?? undefined,
      cudaVersion: fromQ?.cudaVersion,
      details: fromQ && fromQ.details.length > 0 ? fromQ.details : undefined,
      migDevices,
    };
  });
}

export type AmdProbe =
  | { state: "missing" }
  | { state: "timeout"; reason: string }
  | { state: "error"; message: string }
  | { state: "ok"; gpus: Gpu[] };

export function probeAmd(ctx: DoctorContext): Promise<AmdProbe> {
  return ctx.shared("amd-smi", async (signal) => {
    const r = await runTool("amd-smi", ["static", "--json"], {
      env: ctx.env,
      timeoutMs: GPU_TOOL_TIMEOUT_MS,
      signal,
    });
    if (r.kind === "missing") return { state: "missing" };
    if (r.kind === "timeout") return { state: "timeout", reason: r.reason };
    if (r.kind === "failed") {
      const msg = `${r.stderr}\n${r.stdout}`.trim().split("\n")[0] || r.reason;
      return { state: "error", message: msg };
    }
    try {
      const gpus = parseAmdSmiStatic(r.stdout);
      if (gpus.length === 0) return { state: "error", message: "amd-smi listed no GPU" };
      return { state: "ok", gpus };
    } catch (e) {
      return { state: "error", message: `amd-smi printed JSON xim cannot read: ${(e as Error).message}` };
    }
  });
}

/** A one-line description of a GPU list: "2x NVIDIA A40 (46068 MiB)". */
export function describeGpus(gpus: ReadonlyArray<Pick<Gpu, "name" | "memoryTotalMiB">>): string {
  const counts = new Map<string, number>();
  for (const g of gpus) {
    const label = `${g.name} (${g.memoryTotalMiB} MiB)`;
    counts.set(label, (counts.get(label) ?? 0) + 1);
  }
  return [...counts].map(([label, n]) => `${n}x ${label}`).join(", ");
}

/** Whether a GPU driver answers on this machine (then the CPU-inference checks are informational). */
export async function gpuAnswers(ctx: DoctorContext): Promise<boolean> {
  const nv = await probeNvidia(ctx);
  if (nv.state === "ok") return true;
  if (nv.state !== "missing") return false;
  return (await probeAmd(ctx)).state === "ok";
}

/** The planner's hardware detection (GPUs, CPU flags, memory, /dev/shm), once per doctor run. */
export function detectedHardware(ctx: DoctorContext): Promise<Hardware> {
  return ctx.shared("hardware", () =>
    detectHardware({
      env: ctx.env,
      procRoot: ctx.procRoot,
      sysRoot: ctx.sysRoot,
      shmPath: join(ctx.devRoot, "shm"),
      timeoutMs: GPU_TOOL_TIMEOUT_MS,
    }),
  );
}
