/**
 * @module `xim router`: not built yet (issue 3). The issue that builds it replaces this file.
 */
import type { CommandSpec } from "./command.ts";
import { pending } from "./pending.ts";

export const routerCommand: CommandSpec = pending("router", "The self-hostable reference router", 3);
