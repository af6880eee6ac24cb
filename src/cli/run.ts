/**
 * @module `xim run`: not built yet (issue  engine, lease, inference relay:4). The issue that builds it replaces this file.
 */
import type { CommandSpec } from "./command.ts";
import { pending } from "./pending.ts";

export const runCommand: CommandSpec = pending("run", "Run the node: engine, lease and inference relay", 4);
