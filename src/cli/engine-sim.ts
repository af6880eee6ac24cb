/**
 * @module `xim engine-sim`: not built yet (issue 4). The issue that builds it replaces this file.
 */
import type { CommandSpec } from "./command.ts";
import { pending } from "./pending.ts";

export const engineSimCommand: CommandSpec = pending(
  "engine-sim",
  "Run the simulated OpenAI-compatible engine",
  4,
);
