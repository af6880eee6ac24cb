/**
 * The xim executable: argv -> command table -> exit code. Everything else
 * lives under src/; this file only wires the process to the CLI.
 *
 * `xim --version` is answered before the CLI is loaded: evaluating the whole
 * bundle (zeromq's addon, TLS, metrics) costs most of a start-up, and scripts
 * and health checks call `--version` often. The dynamic import keeps the rest
 * of the bundle unevaluated until it is needed (esbuild wraps it lazily).
 */
import { XIM_VERSION } from "./src/core/version.ts";

const argv = process.argv.slice(2);

if (argv.length === 1 && (argv[0] === "--version" || argv[0] === "-V")) {
  process.stdout.write(`xim ${XIM_VERSION}\n`);
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
