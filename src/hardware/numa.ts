/**
 * @module NUMA topology for the CPU plan: which logical CPUs each NUMA node
 * has, which of them are one per physical core (hyperthread siblings left
 * out), and each node's memory. The kernel's sysfs is the real source
 * (/sys/devices/system/node/nodeN/{cpulist,meminfo} and
 * /sys/devices/system/cpu/cpuN/topology/thread_siblings_list); lscpu's
 * "NUMA nodeN CPU(s)" lines name the nodes when it ran. The sysfs root is
 * a parameter so tests read a fixture tree.
 */
import { readdir } from "node:fs/promises";
import { join } from "node:path";
import { readTextBounded } from "../core/bounded-read.ts";
import type { NumaNode } from "./types.ts";

/** sysfs files are a page at most; anything bigger is not what we expect. */
const SYSFS_LIMIT = { maxBytes: 64 * 1024 };

/** The CPUs of a kernel CPU list such as "0-15,32-47" or "0,2,4"; malformed parts are skipped. */
export function parseCpuList(list: string): number[] {
  const out: number[] = [];
  for (const part of list.split(",")) {
    const m = /^\s*(\d+)(?:-(\d+))?\s*$/.exec(part);
    if (!m) continue;
    const a = Number(m[1]);
    const b = m[2] === undefined ? a : Number(m[2]);
    // A bound keeps a corrupt range ("0-99999999") from allocating without end.
    for (let c = a; c <= b && c - a < 65_536; c++) out.push(c);
  }
  return out;
}

/** The shortest kernel-style list of these CPUs: [0,1,2,3,8] -> "0-3,8" (the format vLLM's bind lists take). */
export function formatCpuList(cpus: readonly number[]): string {
  const sorted = [...new Set(cpus)].sort((a, b) => a - b);
  const parts: string[] = [];
  for (let i = 0; i < sorted.length; ) {
    let j = i;
    while (j + 1 < sorted.length && sorted[j + 1] === sorted[j] + 1) j++;
    parts.push(j === i ? String(sorted[i]) : `${sorted[i]}-${sorted[j]}`);
    i = j + 1;
  }
  return parts.join(",");
}

/** A node's MemTotal and MemFree from its sysfs meminfo ("Node 0 MemTotal:  65536000 kB"). */
export function parseNodeMeminfo(text: string): { totalBytes: number | null; freeBytes: number | null } {
  const kb = (key: string) => {
    const m = new RegExp(`^Node\\s+\\d+\\s+${key}:\\s+(\\d+)\\s*kB`, "m").exec(text);
    return m ? Number(m[1]) * 1024 : null;
  };
  return { totalBytes: kb("MemTotal"), freeBytes: kb("MemFree") };
}

async function readSys(path: string): Promise<string | null> {
  try {
    return await readTextBounded(path, { what: path, ...SYSFS_LIMIT });
  } catch {
    return null;
  }
}

/** NUMA nodes with CPUs from sysfs, ordered by node id; empty when sysfs has no node folder. */
export async function sysfsNodes(sysRoot: string): Promise<NumaNode[]> {
  const base = join(sysRoot, "devices/system/node");
  let names: string[];
  try {
    names = await readdir(base);
  } catch {
    return [];
  }
  const ids = names
    .map((n) => /^node(\d+)$/.exec(n)?.[1])
    .filter((id): id is string => id !== undefined)
    .map(Number)
    .sort((a, b) => a - b);
  const nodes: NumaNode[] = [];
  for (const id of ids) {
    const list = await readSys(join(base, `node${id}`, "cpulist"));
    const cpus = list ? parseCpuList(list.trim()) : [];
    // A node without CPUs (POWER9 GPU memory, CXL memory) is not a place to run a rank.
    if (cpus.length > 0)
      nodes.push({ id, cpus, coreCpus: null, memoryTotalBytes: null, memoryFreeBytes: null });
  }
  return nodes;
}

/**
 * Fill what sysfs knows into nodes found elsewhere: each node's memory, and,
 * where `coreCpus` is still unknown, one logical CPU per physical core (the
 * lowest of each sibling set). A CPU whose siblings cannot be read leaves
 * its node's `coreCpus` unknown rather than guessed.
 */
export async function withSysfsDetail(nodes: NumaNode[], sysRoot: string): Promise<NumaNode[]> {
  const out: NumaNode[] = [];
  for (const node of nodes) {
    const mem = await readSys(join(sysRoot, "devices/system/node", `node${node.id}`, "meminfo"));
    const { totalBytes, freeBytes } = mem ? parseNodeMeminfo(mem) : { totalBytes: null, freeBytes: null };
    let coreCpus = node.coreCpus;
    if (coreCpus === null) {
      const firsts: number[] = [];
      for (const cpu of node.cpus) {
        const text = await readSys(
          join(sysRoot, "devices/system/cpu", `cpu${cpu}`, "topology/thread_siblings_list"),
        );
        const siblings = text ? parseCpuList(text.trim()) : [];
        if (siblings.length === 0) {
          firsts.length = 0;
          break;
        }
        if (Math.min(...siblings) === cpu) firsts.push(cpu);
      }
      coreCpus = firsts.length > 0 ? firsts : null;
    }
    out.push({ ...node, coreCpus, memoryTotalBytes: totalBytes, memoryFreeBytes: freeBytes });
  }
  return out;
}
