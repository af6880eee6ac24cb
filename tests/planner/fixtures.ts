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
  cleanup: () => void;
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
    cleanup: () => rmSync(root, { recursive: true, force: true }),
  };
}
