/**
 * @module `xim pull`: not built yet (issue 7). The issue that builds it replaces this file.
 */
import type { CommandSpec } from "./command.ts";
import { pending } from "./pending.ts";

export const pullCommand: CommandSpec = pending("pull", "Fetch a model into the local cache", 7);
