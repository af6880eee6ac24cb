/**
 * Helpers shared by the planner tests: a PATH holding only the chosen test
 * doubles from tests/fixtures/bin, and a fake /proc with a meminfo.
 */
import { mkdirSync, mkdtempSync, rmSync, symlinkSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";

export const FIXTURES = resolve(import.meta.dirname, "../fixtures");
export const BIN = join(FIXTURES, "bin");
export const MODELS = join(FIXTURES, "models");

export interface Sandbox {
  root: string;
  /** A folder on PATH with symlinks to the named test doubles only. */
  binWith: (tools: string[]) => string;
  /** A fake /proc whose meminfo reports these sizes (GiB). */
  procWith: (totalGiB: number, availableGiB: number) => string;
  /** A fake /sys with these NUMA nodes (see sysTree); an empty folder when none are given. */
  sysWith: (nodes?: SysNode[], siblings?: (cpu: number) => number[]) => string;
  cleanup: () => void;
}

export const CPU_FIXTURES = join(FIXTURES, "cpu");

export interface SysNode {
  id: number;
  cpus: string;
  memGiB: number;
  freeGiB?: number;
}

/** Parse "0-3,8" (fixture input only). */
function cpusOf(list: string): number[] {
  return list.split(",").flatMap((p) => {
    const [a, b] = p.split("-").map(Number);
    return Array.from({ length: (b ?? a) - a + 1 }, (_, i) => a + i);
  });
}

/**
 * A sysfs tree in the kernel's formats (tests/fixtures/cpu/README.md):
 * nodeN/cpulist and nodeN/meminfo per node, and each CPU's
 * thread_siblings_list when `siblings` is given.
 */
export function sysTree(dir: string, nodes: SysNode[], siblings?: (cpu: number) => number[]): string {
  const kb = (g: number) => String(g * 1024 * 1024).padStart(12);
  for (const n of nodes) {
    const node = join(dir, "devices/system/node", `node${n.id}`);
    mkdirSync(node, { recursive: true });
    writeFileSync(join(node, "cpulist"), `${n.cpus}\n`);
    writeFileSync(
      join(node, "meminfo"),
      `Node ${n.id} MemTotal:       ${kb(n.memGiB)} kB\nNode ${n.id} MemFree:        ${kb(n.freeGiB ?? n.memGiB - 2)} kB\nNode ${n.id} MemUsed:        ${kb(2)} kB\n`,
    );
    if (!siblings) continue;
    for (const c of cpusOf(n.cpus)) {
      const topo = join(dir, "devices/system/cpu", `cpu${c}`, "topology");
      mkdirSync(topo, { recursive: true });
      writeFileSync(join(topo, "thread_siblings_list"), `${siblings(c).join(",")}\n`);
    }
  }
  return dir;
}

export function sandbox(): Sandbox {
  const root = mkdtempSync(join(tmpdir(), "xim-planner-"));
  let n = 0;
  return {
    root,
    binWith(tools) {
      const dir = join(root, `bin-${n++}`);
      mkdirSync(dir);
      for (const t of tools) symlinkSync(join(BIN, t), join(dir, t));
      return dir;
    },
    procWith(totalGiB, availableGiB) {
      const dir = join(root, `proc-${n++}`);
      mkdirSync(dir);
      const kb = (g: number) => String(g * 1024 * 1024).padStart(12);
      writeFileSync(
        join(dir, "meminfo"),
        `MemTotal:       ${kb(totalGiB)} kB\nMemFree:        ${kb(availableGiB - 1)} kB\nMemAvailable:   ${kb(availableGiB)} kB\nBuffers:              123456 kB\n`,
      );
      return dir;
    },
    sysWith(nodes = [], siblings) {
      const dir = join(root, `sys-${n++}`);
      mkdirSync(dir);
      return sysTree(dir, nodes, siblings);
    },
    cleanup: () => rmSync(root, { recursive: true, force: true }),
  };
}
