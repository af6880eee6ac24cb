import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { once } from "node:events";
import { createInterface } from "node:readline";
import { describe, test } from "node:test";
import { fileURLToPath } from "node:url";
import { VLLM_MESSAGES } from "../../src/engine/vllm-messages.ts";
import { httpGet, WAIT_MS } from "./engine.case.ts";

const MAIN = fileURLToPath(new URL("../../main.ts", import.meta.url));

function xim(args: string[]) {
  const child = spawn(process.execPath, [MAIN, "engine-sim", ...args], { stdio: ["pipe", "pipe", "pipe"] });
  let stderr = "";
  child.stderr.on("data", (c: Buffer) => {
    stderr += c.toString("utf8");
  });
  const exited = once(child, "exit").then(([code]) => code as number | null);
  const timer = setTimeout(() => child.kill("SIGKILL"), WAIT_MS);
  void exited.then(() => clearTimeout(timer));
  return { child, exited, stderr: () => stderr };
}

describe("xim engine-sim", { timeout: 60_000 }, () => {
  test("prints the bound port as one JSON line, serves, and exits 0 when its stdin closes (its supervisor died)", async () => {
    const run = xim(["--port", "0", "--model", "m", "--exit-on-stdin-close"]);
    const [line] = (await once(createInterface({ input: run.child.stdout }), "line")) as [string];
    const listening = JSON.parse(line) as { event: string; port: number; baseUrl: string };
    assert.equal(listening.event, "listening");
    assert.ok(listening.port > 0);
    assert.equal((await httpGet(listening.baseUrl, "/health")).status, 200);
    run.child.stdin.end();
    assert.equal(await run.exited, 0);
  });

  test("while loading it answers nothing (connections reset, as vLLM refuses them); with --loading-503, 503", async () => {
    for (const [flags, want] of [
      [[], 0],
      [["--loading-503"], 503],
    ] as const) {
      const run = xim(["--port", "0", "--load-time-ms", "600000", ...flags]);
      const [line] = (await once(createInterface({ input: run.child.stdout }), "line")) as [string];
      const { baseUrl } = JSON.parse(line) as { baseUrl: string };
      assert.equal((await httpGet(baseUrl, "/health")).status, want, `flags ${flags.join(" ")}`);
      run.child.kill("SIGTERM");
      assert.equal(await run.exited, 0);
    }
  });

  test("SIGTERM stops it with exit 0", async () => {
    const run = xim(["--port", "0"]);
    await once(createInterface({ input: run.child.stdout }), "line");
    run.child.kill("SIGTERM");
    assert.equal(await run.exited, 0);
    assert.match(run.stderr(), /shut down/);
  });

  test("--fail-at-start oom prints vLLM's real out-of-memory text and exits 1", async () => {
    const run = xim(["--port", "0", "--fail-at-start", "oom"]);
    assert.equal(await run.exited, 1);
    assert.ok(run.stderr().endsWith(VLLM_MESSAGES.torchOomEngineCore));
  });

  test("an unknown failure kind is a usage error naming the accepted ones", async () => {
    const run = xim(["--fail-at-start", "gremlins"]);
    assert.equal(await run.exited, 2);
    assert.match(
      run.stderr(),
      /--fail-at-start expects one of oom, cuda-graph, model-not-found, port-in-use/,
    );
  });
});
