/**
 * @module Subcommands whose implementation has not landed yet. Each says so
 * plainly and exits 1; the issue that builds it replaces its entry.
 */
import { XimError } from "../core/errors.ts";
import type { CommandSpec } from "./command.ts";

function pending(name: string, summary: string, issue: number): CommandSpec {
  return {
    name,
    summary,
    examples: [],
    async run() {
      throw new XimError(
        "XIM_UNAVAILABLE",
        `'xim ${name}' is not available in this build yet (tracked as issue ${issue})`,
      );
    },
  };
}

export const pendingCommands: CommandSpec[] = [
  pending("enroll", "Trade a one-time join key for a node identity", 3),
  pending("run", "Run the node: engine, lease, inference relay", 4),
  pending("doctor", "Check this machine and explain what is wrong", 6),
  pending("tune-moe", "Find or produce tuned fused-MoE kernel configs", 7),
  pending("pull", "Fetch a model into the local cache", 7),
  pending("router", "The self-hostable reference router", 3),
];
