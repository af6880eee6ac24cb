/**
 * @module How to run this same xim again as a child (for `engine-sim`):
 * inside the single executable the binary is process.execPath itself; from
 * source it is `node main.ts`; from a plain bundle, `node <bundle>`.
 */
import { existsSync } from "node:fs";
import { isSea } from "node:sea";
import { fileURLToPath } from "node:url";

export interface SelfCommand {
  file: string;
  /** Arguments before the subcommand (the script, when not a single executable). */
  prefix: string[];
}

export function selfCommand(): SelfCommand {
  if (isSea()) return { file: process.execPath, prefix: [] };
  const fromSource = fileURLToPath(new URL("../../main.ts", import.meta.url));
  if (existsSync(fromSource)) return { file: process.execPath, prefix: [fromSource] };
  return { file: process.execPath, prefix: [process.argv[1]] };
}
