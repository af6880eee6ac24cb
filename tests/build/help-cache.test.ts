import assert from "node:assert/strict";
import { test } from "node:test";
import { renderHelpCache } from "../../scripts/help-cache.ts";
import { commands } from "../../src/cli/commands.ts";
import { recordingIo } from "../../src/cli/io.ts";
import { runCli } from "../../src/cli/program.ts";

test("the build's help cache holds, for every command, exactly what the CLI prints for --help and --help-all", async () => {
  const cache = await renderHelpCache();
  for (const key of [
    "--help",
    "run --help",
    "run --help-all",
    "router nodes revoke --help",
    "router models assign --help",
  ]) {
    assert.ok(cache[key], `${key} is cached`);
    const rec = recordingIo({}, "/");
    const code = await runCli(key.split(" "), rec.io, {
      version: () => "",
      verboseVersion: async () => "",
      commands,
    });
    assert.equal(code, 0);
    assert.equal(cache[key], rec.stdout(), key);
  }
});
