/**
 * @module The size of the configured model, when doctor can know it: the
 * weight files of XEROTIER_AGENT_INITIAL_MODEL_PATH on disk, and the
 * parameter count they imply at 16 bits per weight. Used to hold RAM and
 * disk against the Xerotier documentation's memory table.
 */
import { readdir, stat } from "node:fs/promises";
import { join } from "node:path";

const WEIGHT_FILE = /\.(safetensors|bin|pt|pth|gguf)$/;

export interface ModelSize {
  path: string;
  weightBytes: number;
  /** Parameters implied at 2 bytes each (bf16/fp16 checkpoints). */
  paramsBillions: number;
}

export async function modelSize(path: string | undefined): Promise<ModelSize | undefined> {
  if (!path) return undefined;
  let names: string[];
  try {
    names = await readdir(path);
  } catch {
    return undefined;
  }
  let weightBytes = 0;
  for (const n of names.filter((x) => WEIGHT_FILE.test(x))) {
    try {
      weightBytes += (await stat(join(path, n))).size;
    } catch {
      // vanished meanwhile
    }
  }
  if (weightBytes === 0) return undefined;
  return { path, weightBytes, paramsBillions: weightBytes / 2 / 1e9 };
}

/**
 * System RAM (decimal GB) the Xerotier documentation's table asks for CPU inference:
 * sub-1B ~32 GB, 3-4B ~64 GB, 7-8B ~96 GB. Sizes between rows take the next
 * row; beyond 8B the table's own line is continued (32 GB + 8 GB per billion
 * parameters, which gives 64 at 4B and 96 at 8B).
 */
export function requiredRamGb(paramsBillions: number): number {
  if (paramsBillions <= 1) return 32;
  if (paramsBillions <= 4) return 64;
  if (paramsBillions <= 8) return 96;
  return Math.ceil(32 + 8 * paramsBillions);
}

/** The Xerotier documentation's minimum system RAM for CPU inference when the model is not known. */
export const MIN_CPU_RAM_GB = 64;

export const GB = 1e9;
export const GiB = 1024 ** 3;

export function gb(bytes: number): string {
  return `${(bytes / GB).toFixed(1)} GB`;
}
