/**
 * @module The whole CLI behind main.ts: loaded only when the command needs
 * more than the version string, so `xim --version` evaluates none of it.
 */
import { commands } from "./commands.ts";
import { processIo } from "./io.ts";
import { runCli } from "./program.ts";
import { verboseVersion, versionLine } from "./version.ts";

export function runMain(argv: string[]): Promise<number> {
  return runCli(argv, processIo(), { version: versionLine, verboseVersion, commands });
}
