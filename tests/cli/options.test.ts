/**
 * A command's options are declared once (src/cli/options.ts builders) and
 * reach its `run` typed, under the names they are declared with, through
 * the real commander parser.
 */
import assert from "node:assert/strict";
import { describe, test } from "node:test";
import { defineCommand } from "../../src/cli/command.ts";
import { recordingIo } from "../../src/cli/io.ts";
import {
  jsonOption,
  listOption,
  negatedSwitch,
  switchOption,
  textOption,
  valueOption,
} from "../../src/cli/options.ts";
import { runCli } from "../../src/cli/program.ts";

function evenNumber(value: string): number {
  const n = Number(value);
  if (!Number.isInteger(n) || n % 2 !== 0)
    throw new Error(`--even must be an even whole number, got '${value}'`);
  return n;
}

const options = {
  json: jsonOption,
  force: switchOption("--force", "do it anyway"),
  wait: negatedSwitch("--no-wait", "fail at once"),
  name: textOption("--name <name>", "a name"),
  project: textOption("--project <name>", "a project", "default"),
  even: valueOption("--even <n>", "an even number", evenNumber, 2),
  odd: valueOption("--odd <n>", "any number", Number),
  host: listOption("--host <name>", "repeatable"),
};

/** Run `xim probe ...` and return what its `run` received. */
async function probe(argv: string[]) {
  let received: Record<string, unknown> | undefined;
  const command = defineCommand({
    name: "probe",
    summary: "records its options",
    options,
    examples: [],
    async run(ctx) {
      // Typed from the declaration: these compile only because the types are inferred.
      const typed: { project: string; even: number; wait: boolean; host: string[] | undefined } = ctx.options;
      assert.ok(typed);
      received = ctx.options;
      return 0;
    },
  });
  const rec = recordingIo({}, "/");
  const code = await runCli(["probe", ...argv], rec.io, {
    version: () => "0",
    verboseVersion: async () => "",
    commands: [command],
  });
  return { code, received, stderr: rec.stderr() };
}

describe("typed command options", () => {
  test("defaults, switches, a negated switch and unset options arrive under their declared names", async () => {
    const r = await probe([]);
    assert.equal(r.code, 0, r.stderr);
    assert.deepEqual(r.received, {
      json: undefined,
      force: undefined,
      wait: true,
      name: undefined,
      project: "default",
      even: 2,
      odd: undefined,
      host: undefined,
    });
  });

  test("given options arrive parsed; a repeated list option keeps every value in order", async () => {
    const r = await probe([
      "--json",
      "--no-wait",
      "--name",
      "n1",
      "--even",
      "8",
      "--odd",
      "3",
      "--host",
      "a",
      "--host",
      "b",
    ]);
    assert.equal(r.code, 0, r.stderr);
    assert.deepEqual(r.received, {
      json: true,
      force: undefined,
      wait: false,
      name: "n1",
      project: "default",
      even: 8,
      odd: 3,
      host: ["a", "b"],
    });
  });

  test("a parser's refusal is a usage error (exit 2) naming the flag, the value and what is accepted", async () => {
    const r = await probe(["--even", "3"]);
    assert.equal(r.code, 2);
    assert.equal(r.received, undefined, "run was not called");
    assert.match(
      r.stderr,
      /option '--even <n>' argument '3' is invalid\. --even must be an even whole number, got '3'/,
    );
  });
});
