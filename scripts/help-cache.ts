/**
 * @module The help text of every command, rendered at build time for the
 * single executable: `xim <command> --help` (and `--help-all`) then prints
 * it without evaluating the CLI (zeromq's addon, TLS, every command's
 * module), which is most of a start-up. Rendered for an 80-column pipe;
 * main.ts uses it only where the live CLI would print the same text.
 */

import type { CommandSpec } from "../src/cli/command.ts";
import { commands } from "../src/cli/commands.ts";
import { recordingIo } from "../src/cli/io.ts";
import { runCli } from "../src/cli/program.ts";

const root = { version: () => "", verboseVersion: async () => "", commands };

function paths(specs: readonly CommandSpec[], prefix: string[] = []): string[][] {
  return specs.flatMap((s) => {
    if (s.hidden) return [];
    const path = [...prefix, s.name];
    return [path, ...paths(s.subcommands ?? [], path)];
  });
}

/** `"run --help"` -> the text `xim run --help` prints to stdout in a pipe. */
export async function renderHelpCache(): Promise<Record<string, string>> {
  const cache: Record<string, string> = {};
  for (const path of [[], ...paths(commands)]) {
    for (const flag of ["--help", "--help-all"]) {
      const rec = recordingIo({}, "/");
      const code = await runCli([...path, flag], rec.io, root);
      if (code === 0 && rec.stderr() === "") cache[[...path, flag].join(" ")] = rec.stdout();
    }
  }
  return cache;
}
