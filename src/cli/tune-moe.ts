/**
 * @module `xim tune-moe`: not built yet (issue 7). The issue that builds it replaces this file.
 */
import type { CommandSpec } from "./command.ts";
import { pending } from "./pending.ts";

export const tuneMoeCommand: CommandSpec = pending(
  "tune-moe",
  "Find or produce tuned fused-MoE kernel configs",
  7,
);
