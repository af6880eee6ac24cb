/**
 * @module The table of contents of the CLI: every subcommand, in help order.
 */
import type { CommandSpec } from "./command.ts";
import { configCommand } from "./config.ts";
import { pendingCommands } from "./pending.ts";

export const commands: CommandSpec[] = [...pendingCommands, configCommand];
