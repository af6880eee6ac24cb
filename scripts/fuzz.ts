/**
 * @module `npm run fuzz -- --seconds N [--seed S] [files...]`: the fuzz
 * tests (tests/fuzz/) with each time-bounded property running N seconds
 * (default 60) instead of the few seconds `npm test` gives them. The
 * duration and seed reach the tests as XIM_FUZZ_SECONDS and XIM_FUZZ_SEED.
 */
import { spawnSync } from "node:child_process";
import { readdirSync } from "node:fs";
import { join } from "node:path";
import { parseArgs } from "node:util";

const { values, positionals } = parseArgs({
  options: { seconds: { type: "string", default: "60" }, seed: { type: "string" } },
  allowPositionals: true,
});
for (const [name, text] of [
  ["--seconds", values.seconds],
  ["--seed", values.seed],
] as const) {
  if (text !== undefined && !(Number(text) > 0)) {
    process.stderr.write(`${name} must be a positive number, got '${text}'\n`);
    process.exit(2);
  }
}
const files =
  positionals.length > 0
    ? positionals
    : readdirSync("tests/fuzz")
        .filter((f) => f.endsWith(".test.ts"))
        .map((f) => join("tests/fuzz", f));
const seconds = Number(values.seconds);
const result = spawnSync(
  process.execPath,
  // One file at a time: the router processes each file starts get the two cores to themselves.
  ["--test", "--test-concurrency=1", `--test-timeout=${Math.round((seconds * 20 + 300) * 1000)}`, ...files],
  {
    stdio: "inherit",
    env: {
      ...process.env,
      XIM_FUZZ_SECONDS: String(seconds),
      ...(values.seed ? { XIM_FUZZ_SEED: values.seed } : {}),
    },
  },
);
process.exit(result.status ?? 1);
