/**
 * @module NVIDIA probe: `nvidia-smi --query-gpu=...` for the GPUs,
 * `nvidia-smi -L` for UUIDs and MIG slices, `nvidia-smi topo -m` for
 * NVLink versus PCIe. Honours CUDA_VISIBLE_DEVICES (indices, GPU-/MIG-
 * UUIDs). Every failure becomes a finding; the known failure texts of
 * nvidia-smi are recognised and explained.
 */

import { classifyNvidiaSmiFailure } from "./nvidia-failure.ts";
import { type Env, firstLine, runTool, type ToolResult } from "./run-tool.ts";
import type { Finding, Gpu, MigSlice, Topology } from "./types.ts";

export const NVIDIA_QUERY_ARGS = [
  "--query-gpu=index,name,memory.total,memory.free,compute_cap,driver_version",
  "--format=csv,noheader,nounits",
];

export interface NvidiaProbe {
  /** Whether nvidia-smi exists on PATH (a driver is at least installed). */
  present: boolean;
  gpus: Gpu[];
  topology: Topology;
  findings: Finding[];
}

const SOURCE = "nvidia-smi";

function finding(severity: Finding["severity"], message: string, hint?: string): Finding {
  return hint ? { source: SOURCE, severity, message, hint } : { source: SOURCE, severity, message };
}

/** The plan's finding for an nvidia-smi run that did not answer, from its classified failure. */
export function nvidiaFailureFinding(result: ToolResult): Finding {
  switch (result.kind) {
    case "ok":
      return finding("info", "nvidia-smi answered");
    case "missing":
      return finding("info", "no NVIDIA driver (nvidia-smi not found)");
    case "timeout":
      return finding(
        "warning",
        `nvidia-smi did not answer within ${result.timeoutMs} ms (a hung driver or a GPU in a bad state)`,
        "run `nvidia-smi` by hand; `xim doctor` checks the driver and the container runtime",
      );
    case "failed":
      return failedFinding(`${result.stdout}\n${result.stderr}`.trim(), result.exitCode, result.reason);
  }
}

function failedFinding(out: string, exitCode: number | null, reason: string): Finding {
  switch (classifyNvidiaSmiFailure(out, exitCode)) {
    case "nvml-unknown-error":
      return finding(
        "error",
        "NVML: Unknown Error (the container lost its GPUs; see doctor)",
        "restart the container (a `systemctl daemon-reload` on the host drops the GPU device rules of running containers); `xim doctor` explains",
      );
    case "driver-mismatch":
      return finding(
        "error",
        `NVML driver/library version mismatch (the NVIDIA driver was updated but the old kernel module is still loaded): ${firstLine(out)}`,
        "reboot the host so the new driver module loads",
      );
    case "no-driver":
      return finding(
        "error",
        "no NVIDIA driver loaded (nvidia-smi cannot communicate with the NVIDIA driver)",
        "install or load the NVIDIA driver; in a container, start it with the NVIDIA runtime (--gpus all); `xim doctor` checks",
      );
    case "no-devices":
      return finding("info", "nvidia-smi found no NVIDIA GPUs");
    case "nvml-library-missing":
      return finding(
        "error",
        `NVML library not found (${firstLine(out) || reason})`,
        "reinstall the NVIDIA driver",
      );
    case "gpu-lost":
      return finding(
        "error",
        `a GPU has fallen off the bus (${firstLine(out) || reason})`,
        "check the host's kernel log; a reset or reboot is needed",
      );
    case "other":
      return finding("error", `nvidia-smi failed (${reason}): ${firstLine(out) || "no output"}`);
  }
}

function num(text: string): number | null {
  const n = Number(text.trim());
  return Number.isFinite(n) && text.trim() !== "" ? n : null;
}

function cell(text: string): string | null {
  const t = text.trim();
  return t === "" || t.startsWith("[") || t === "N/A" ? null : t;
}

/** Parse the CSV of NVIDIA_QUERY_ARGS (no header, no units). */
export function parseQueryCsv(text: string): Gpu[] {
  const gpus: Gpu[] = [];
  for (const line of text.split("\n")) {
    if (!line.trim()) continue;
    const parts = line.split(",").map((p) => p.trim());
    if (parts.length < 6) continue;
    const [index, name, total, free, cc, driver] = parts;
    const indexN = num(index);
    const totalN = num(total);
    if (indexN === null || totalN === null) continue;
    gpus.push({
      vendor: "nvidia",
      index: indexN,
      name,
      memoryTotalMiB: totalN,
      memoryFreeMiB: num(free),
      boardMemoryMiB: totalN,
      computeCapability: cell(cc),
      driverVersion: cell(driver),
      uuid: null,
      migEnabled: false,
      migSlice: null,
    });
  }
  return gpus;
}

export interface ListedGpu {
  index: number;
  name: string;
  uuid: string;
  mig: Array<{ profile: string; uuid: string }>;
}

/** Parse `nvidia-smi -L`: GPU lines and the MIG device lines under each. */
export function parseList(text: string): ListedGpu[] {
  const out: ListedGpu[] = [];
  for (const line of text.split("\n")) {
    const gpu = /^GPU (\d+): (.*) \(UUID: (GPU-[^)]+)\)/.exec(line);
    if (gpu) {
      out.push({ index: Number(gpu[1]), name: gpu[2], uuid: gpu[3], mig: [] });
      continue;
    }
    const mig = /^\s+MIG (\S+)\s+Device\s+\d+: \(UUID: (MIG-[^)]+)\)/.exec(line);
    if (mig && out.length > 0) out[out.length - 1].mig.push({ profile: mig[1], uuid: mig[2] });
  }
  return out;
}

/** Memory of a MIG profile from its name ("3g.40gb", "1c.3g.71gb"): decimal GB, as MiB. */
export function migProfileMiB(profile: string): number {
  const m = /(\d+)gb$/i.exec(profile);
  return m ? Math.floor((Number(m[1]) * 1e9) / 2 ** 20) : 0;
}

/** The GPU rows of `nvidia-smi topo -m`: link names keyed by GPU index. */
export function parseTopology(text: string): Map<number, Map<number, string>> {
  // Drivers 590+ underline the header with ANSI escapes even into a file.
  const clean = text.replace(/\x1b\[[0-9;]*m/g, "");
  const lines = clean.split("\n");
  const headerLine = lines.find((l) => /\tGPU0\b/.test(l) || /^\s*GPU0\s/.test(l.trim()));
  const result = new Map<number, Map<number, string>>();
  if (!headerLine) return result;
  const header = headerLine.split("\t").map((h) => h.trim());
  for (const line of lines) {
    const m = /^GPU(\d+)\t/.exec(line);
    if (!m) continue;
    const cells = line.split("\t");
    const row = new Map<number, string>();
    header.forEach((h, i) => {
      const col = /^GPU(\d+)$/.exec(h);
      if (col && i < cells.length) row.set(Number(col[1]), cells[i].trim());
    });
    result.set(Number(m[1]), row);
  }
  return result;
}

/** Classify the links among the given GPU indices. */
export function topologyOf(indices: number[], matrix: Map<number, Map<number, string>> | null): Topology {
  if (indices.length <= 1)
    return { kind: "single", links: [], detail: indices.length === 1 ? "one GPU" : "no GPU" };
  if (!matrix || matrix.size === 0) {
    return { kind: "unknown", links: [], detail: "nvidia-smi topo -m gave no GPU matrix" };
  }
  const links = indices.map((a) => indices.map((b) => (a === b ? "X" : (matrix.get(a)?.get(b) ?? "?"))));
  let nv = 0;
  let other = 0;
  for (let i = 0; i < indices.length; i++) {
    for (let j = 0; j < indices.length; j++) {
      if (i === j) continue;
      if (/^NV\d+$/.test(links[i][j])) nv++;
      else other++;
    }
  }
  const pairs = [...new Set(links.flat().filter((l) => l !== "X"))].join(", ");
  if (other === 0) return { kind: "nvlink", links, detail: `every GPU pair is NVLink-connected (${pairs})` };
  if (nv === 0) return { kind: "pcie", links, detail: `no NVLink between the GPUs; PCIe paths ${pairs}` };
  return { kind: "mixed", links, detail: `some GPU pairs lack NVLink (${pairs})` };
}

interface Visible {
  gpus: Gpu[];
  findings: Finding[];
}

/** Apply CUDA_VISIBLE_DEVICES (indices or GPU-/MIG- UUIDs, in the engine's order). */
export function applyVisibleDevices(all: Gpu[], listed: ListedGpu[], value: string | undefined): Visible {
  if (value === undefined) return { gpus: all, findings: [] };
  const tokens = value
    .split(",")
    .map((t) => t.trim())
    .filter((t) => t.length > 0);
  if (tokens.length === 0 || tokens[0] === "-1" || value.trim() === "NoDevFiles") {
    return {
      gpus: [],
      findings: [
        finding(
          "warning",
          `CUDA_VISIBLE_DEVICES=${JSON.stringify(value)} hides every GPU`,
          "unset it or list the GPUs to use",
        ),
      ],
    };
  }
  const gpus: Gpu[] = [];
  const findings: Finding[] = [];
  for (const token of tokens) {
    let gpu: Gpu | undefined;
    let slice: MigSlice | null = null;
    if (/^\d+$/.test(token)) {
      gpu = all.find((g) => g.index === Number(token));
    } else if (token.startsWith("GPU-")) {
      const l = listed.find((x) => x.uuid === token || x.uuid.startsWith(token));
      gpu = l ? all.find((g) => g.index === l.index) : undefined;
    } else if (token.startsWith("MIG-")) {
      for (const l of listed) {
        const m = l.mig.find((x) => x.uuid === token);
        if (m) {
          gpu = all.find((g) => g.index === l.index);
          slice = { profile: m.profile, uuid: m.uuid, memoryMiB: migProfileMiB(m.profile) };
        }
      }
    }
    if (!gpu) {
      findings.push(
        finding(
          "warning",
          `CUDA_VISIBLE_DEVICES names ${token}, which nvidia-smi does not list; CUDA stops at the first unknown entry`,
        ),
      );
      // CUDA ignores every device after an invalid entry.
      break;
    }
    if (slice) {
      gpus.push({ ...gpu, memoryTotalMiB: slice.memoryMiB, memoryFreeMiB: slice.memoryMiB, migSlice: slice });
      // CUDA exposes only one MIG slice per process.
      break;
    }
    gpus.push(gpu);
  }
  return { gpus, findings };
}

export async function probeNvidia(env: Env, timeoutMs: number): Promise<NvidiaProbe> {
  const query = await runTool("nvidia-smi", NVIDIA_QUERY_ARGS, { env, timeoutMs });
  const none: Topology = { kind: "single", links: [], detail: "no GPU" };
  if (query.kind !== "ok") {
    return {
      present: query.kind !== "missing",
      gpus: [],
      topology: none,
      findings: [nvidiaFailureFinding(query)],
    };
  }
  const findings: Finding[] = [];
  const all = parseQueryCsv(query.stdout);
  if (all.length === 0) {
    findings.push(finding("info", "nvidia-smi found no NVIDIA GPUs"));
    return { present: true, gpus: [], topology: none, findings };
  }
  const list = await runTool("nvidia-smi", ["-L"], { env, timeoutMs });
  const listed = list.kind === "ok" ? parseList(list.stdout) : [];
  if (list.kind !== "ok") findings.push({ ...nvidiaFailureFinding(list), severity: "warning" });
  for (const gpu of all) {
    const l = listed.find((x) => x.index === gpu.index);
    if (l) {
      gpu.uuid = l.uuid;
      gpu.migEnabled = l.mig.length > 0;
    }
  }
  const visible = applyVisibleDevices(all, listed, env.CUDA_VISIBLE_DEVICES);
  findings.push(...visible.findings);
  for (const gpu of visible.gpus) {
    if (!gpu.migEnabled) continue;
    if (gpu.migSlice) {
      findings.push(
        finding(
          "info",
          `GPU ${gpu.index} (${gpu.name}) is in MIG mode; using slice ${gpu.migSlice.profile} (${gpu.migSlice.uuid}), about ${gpu.migSlice.memoryMiB} MiB by its profile name; nvidia-smi reports the whole board (${gpu.boardMemoryMiB} MiB)`,
        ),
      );
    } else {
      const slices = listed.find((l) => l.index === gpu.index)?.mig ?? [];
      findings.push(
        finding(
          "warning",
          `GPU ${gpu.index} (${gpu.name}) is in MIG mode with ${slices.length} slices (${slices.map((s) => s.profile).join(", ")}); the memory reported (${gpu.boardMemoryMiB} MiB) is the whole board's, not a slice's`,
          `set CUDA_VISIBLE_DEVICES to one MIG UUID (nvidia-smi -L) so the plan uses that slice's memory`,
        ),
      );
    }
  }
  let topology: Topology = topologyOf(
    visible.gpus.map((g) => g.index),
    null,
  );
  if (visible.gpus.length > 1) {
    const topo = await runTool("nvidia-smi", ["topo", "-m"], { env, timeoutMs });
    if (topo.kind === "ok") {
      topology = topologyOf(
        visible.gpus.map((g) => g.index),
        parseTopology(topo.stdout),
      );
    } else {
      findings.push({ ...nvidiaFailureFinding(topo), severity: "warning" });
    }
  }
  return { present: true, gpus: visible.gpus, topology, findings };
}
