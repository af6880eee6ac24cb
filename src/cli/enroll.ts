/**
 * @module `xim enroll`: not built yet (issue 3). The issue that builds it replaces this file.
 */
import type { CommandSpec } from "./command.ts";
import { pending } from "./pending.ts";

export const enrollCommand: CommandSpec = pending(
  "enroll",
  "Trade a one-time join key for a node identity",
  3,
);
