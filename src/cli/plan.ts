/**
 * @module `xim plan`: not built yet (issue 5). The issue that builds it replaces this file.
 */
import type { CommandSpec } from "./command.ts";
import { pending } from "./pending.ts";

export const planCommand: CommandSpec = pending(
  "plan",
  "Print the engine plan for a model on this machine",
  5,
);
