/**
 * @module `xim doctor`: not built yet (issue 6). The issue that builds it replaces this file.
 */
import type { CommandSpec } from "./command.ts";
import { pending } from "./pending.ts";

export const doctorCommand: CommandSpec = pending(
  "doctor",
  "Check this machine and explain what is wrong",
  6,
);
