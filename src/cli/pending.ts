/**
 * @module A subcommand whose implementation has not landed yet says so
 * plainly and exits 1, instead of pretending to work.
 */
import { XimError } from "../core/errors.ts";
import type { CommandSpec } from "./command.ts";

export function pending(name: string, summary: string, issue: number): CommandSpec {
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
