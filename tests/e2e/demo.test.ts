/**
 * `npm run demo` (scripts/demo.ts) as a user runs it: a child process
 * that starts a router and a node with the simulated engine, streams one
 * completion and stops everything. It must print the tokens, exit 0 and
 * leave no temporary folder behind.
 *
 * Bounds: the demo takes about 10 s on an idle machine, most of it six
 * starts of Node running TypeScript (router init, serve, two key commands,
 * the node and its engine). CI runs two test files at once on 2 cores, where
 * a load of 20 was seen to stretch it past the demo's own 50 s: the test
 * gives it 150 s (`--deadline`), then kills it 20 s later if its watchdog
 * did not end it; a hang still fails, with the step it hung at.
 */
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { existsSync } from "node:fs";
import { join } from "node:path";
import { test } from "node:test";
import { REPO } from "../router/harness.ts";

const DEADLINE_S = 150;

test("the demo streams tokens through router and node and stops cleanly", {
  timeout: (DEADLINE_S + 30) * 1000,
}, async () => {
  const child = spawn(
    process.execPath,
    [join(REPO, "scripts", "demo.ts"), "--deadline", String(DEADLINE_S)],
    {
      cwd: REPO,
      env: {
        PATH: process.env.PATH,
        HOME: process.env.HOME,
        TMPDIR: process.env.TMPDIR,
        // npm test's compile cache (package.json), passed on to the demo's processes.
        NODE_COMPILE_CACHE: process.env.NODE_COMPILE_CACHE,
      },
      stdio: ["ignore", "pipe", "pipe"],
    },
  );
  let stdout = "";
  let stderr = "";
  child.stdout.on("data", (d: Buffer) => {
    stdout += d.toString();
  });
  child.stderr.on("data", (d: Buffer) => {
    stderr += d.toString();
  });
  const timer = setTimeout(() => child.kill("SIGKILL"), (DEADLINE_S + 20) * 1000);
  const code = await new Promise<number | null>((resolve) => child.once("exit", resolve));
  clearTimeout(timer);
  assert.equal(code, 0, `demo failed:\n${stdout}\n${stderr}`);
  const tokens = /==> (\d+) tokens \(usage says (\d+)\)/.exec(stdout);
  assert.ok(tokens, stdout);
  assert.equal(tokens[1], "40");
  assert.equal(tokens[2], "40");
  assert.match(stdout, /everything stopped cleanly/);
  const folder = /state in (\S+)\/router\)/.exec(stdout)?.[1];
  assert.ok(folder && !existsSync(folder), `the temporary folder ${folder} was removed`);
});
