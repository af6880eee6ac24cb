/**
 * The xim executable: argv -> command table -> exit code. Everything else
 * lives under src/; this file only wires the process to the CLI.
 */
import { commands } from "./src/cli/commands.ts";
import { processIo } from "./src/cli/io.ts";
import { runCli } from "./src/cli/program.ts";
import { verboseVersion, versionLine } from "./src/cli/version.ts";

// No top-level await: the single executable's bundle is CommonJS.
runCli(process.argv.slice(2), processIo(), { version: versionLine, verboseVersion, commands }).then(
  (code) => {
    process.exitCode = code;
  },
  (err: unknown) => {
    process.stderr.write(`xim: internal error: ${String(err)}\n`);
    process.exitCode = 1;
  },
);
