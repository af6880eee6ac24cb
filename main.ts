/**
 * The xim executable: argv -> command table -> exit code. Everything else
 * lives under src/; this file only wires the process to the CLI.
 *
 * `xim --version` and `--help` are answered before the CLI is loaded: evaluating the whole
 * bundle (zeromq's addon, TLS, metrics) costs most of a start-up, and scripts
 * and health checks call `--version` often. The dynamic import keeps the rest
 * of the bundle unevaluated until it is needed (esbuild wraps it lazily).
 */
import { XIM_VERSION } from "./src/core/version.ts";

/** The help of every command, rendered by the build (scripts/help-cache.ts); absent when run from source. */
declare const __XIM_HELP_CACHE__: string | undefined;

const argv = process.argv.slice(2);

/**
 * `xim [command ...] --help` from the help the build rendered, for an
 * 80-column pipe or terminal: the same bytes the CLI prints, without
 * loading it. Anything else (another width, other flags) goes the long way.
 */
function cachedHelp(): string | undefined {
  if (typeof __XIM_HELP_CACHE__ !== "string") return undefined;
  if (process.stdout.isTTY && process.stdout.columns !== 80) return undefined;
  return (JSON.parse(__XIM_HELP_CACHE__) as Record<string, string>)[argv.join(" ")];
}

const help =
  argv.length > 0 && ["--help", "-h", "--help-all"].includes(argv[argv.length - 1])
    ? cachedHelp()
    : undefined;

if (argv.length === 1 && (argv[0] === "--version" || argv[0] === "-V")) {
  process.stdout.write(`xim ${XIM_VERSION}\n`);
} else if (help !== undefined) {
  // `xim run --help | head` closes the pipe early: that is no error worth a stack.
  process.stdout.on("error", () => {});
  process.stdout.write(help);
} else {
  // No top-level await: the single executable's bundle is CommonJS.
  import("./src/cli/main.ts")
    .then(({ runMain }) => runMain(argv))
    .then(
      (code) => {
        process.exitCode = code;
      },
      (err: unknown) => {
        process.stderr.write(`xim: internal error: ${String(err)}\n`);
        process.exitCode = 1;
      },
    );
}
