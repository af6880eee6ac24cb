import assert from "node:assert/strict";
import { chmodSync, existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, describe, test } from "node:test";
import { setTimeout as sleep } from "node:timers/promises";
import { runTool, which } from "../../src/hardware/run-tool.ts";

// Every tool here is a real shell script run as a real process.
const bin = mkdtempSync(join(tmpdir(), "xim-run-tool-"));
after(() => rmSync(bin, { recursive: true, force: true }));
const env = { PATH: `${bin}:/usr/bin:/bin` };

function tool(name: string, script: string): string {
  const path = join(bin, name);
  writeFileSync(path, `#!/bin/sh\n${script}\n`);
  chmodSync(path, 0o755);
  return path;
}

/** Whether `pid` is gone: no such process, or a zombie waiting for a reaper that may not exist in a container. */
function gone(pid: number): boolean {
  try {
    return /^\d+ \(.*\) Z/.test(readFileSync(`/proc/${pid}/stat`, "utf8"));
  } catch {
    return true;
  }
}

/** Polls until `check` holds; the bound only stops a broken test, the condition itself decides. */
async function until(check: () => boolean, what: string): Promise<void> {
  for (let i = 0; i < 600; i += 1) {
    if (check()) return;
    await sleep(50);
  }
  assert.fail(`gave up waiting for ${what}`);
}

describe("runTool, the one runner of external tools", { timeout: 60_000 }, () => {
  test("a tool that exits 0 gives its stdout and stderr", async () => {
    tool("greets", "echo hello; echo note >&2");
    const r = await runTool("greets", [], { env, timeoutMs: 30_000 });
    assert.deepEqual(r, { kind: "ok", stdout: "hello\n", stderr: "note\n" });
  });

  test("a non-zero exit is a failure with its code and both streams", async () => {
    tool("fails", 'echo partial; echo "it broke" >&2; exit 3');
    const r = await runTool("fails", ["x"], { env, timeoutMs: 30_000 });
    assert.equal(r.kind, "failed");
    assert.equal(r.exitCode, 3);
    assert.equal(r.reason, "exit 3");
    assert.equal(r.stdout, "partial\n");
    assert.equal(r.stderr, "it broke\n");
  });

  test("a tool not on PATH, a folder of its name and a file without the x bit are all missing", async () => {
    mkdirSync(join(bin, "a-folder"));
    writeFileSync(join(bin, "not-executable"), "#!/bin/sh\nexit 0\n", { mode: 0o644 });
    for (const name of ["nowhere-to-be-found", "a-folder", "not-executable", join(bin, "a-folder")]) {
      const r = await runTool(name, [], { env, timeoutMs: 30_000 });
      assert.equal(r.kind, "missing", name);
      assert.match(r.reason, /not found on PATH or not executable/);
      assert.equal(await which(name, env), null, name);
    }
  });

  test("a tool that never answers times out", async () => {
    tool("hangs", "exec sleep 600");
    const r = await runTool("hangs", [], { env, timeoutMs: 200 });
    assert.equal(r.kind, "timeout");
    assert.equal(r.timeoutMs, 200);
    assert.match(r.reason, /hangs did not answer within 0\.2 s/);
  });

  test("stopping a tool kills its whole process group, not only the tool", async () => {
    const pidFile = join(bin, "child.pid");
    // A launcher script whose own child (the Python of a real launcher) would outlive a plain kill.
    tool("launcher", `sleep 600 & echo $! > ${pidFile}; wait`);
    const stop = new AbortController();
    const running = runTool("launcher", [], { env, timeoutMs: 120_000, signal: stop.signal });
    await until(() => existsSync(pidFile) && readFileSync(pidFile, "utf8").endsWith("\n"), "the child's pid");
    const child = Number(readFileSync(pidFile, "utf8"));
    assert.equal(gone(child), false, "the child runs before the stop");
    stop.abort();
    const r = await running;
    assert.equal(r.kind, "timeout");
    await until(() => gone(child), `the launcher's child ${child} to be killed`);
  });

  test("a child left behind holding the output open is killed with the group when the run is stopped", async () => {
    const pidFile = join(bin, "orphan.pid");
    // The tool exits at once; its child keeps stdout open, so the run cannot end by itself.
    tool("leaves-a-child", `sleep 600 & echo $! > ${pidFile}`);
    const stop = new AbortController();
    const running = runTool("leaves-a-child", [], { env, timeoutMs: 120_000, signal: stop.signal });
    await until(() => existsSync(pidFile) && readFileSync(pidFile, "utf8").endsWith("\n"), "the child's pid");
    const child = Number(readFileSync(pidFile, "utf8"));
    stop.abort();
    assert.equal((await running).kind, "timeout");
    await until(() => gone(child), `the left-behind child ${child} to be killed`);
  });

  test("a long-running tool's lines arrive as printed, its working folder is the one given, and past the cap its tail is kept", async () => {
    const folder = mkdtempSync(join(bin, "cwd-"));
    tool(
      "progress",
      'pwd; i=0; while [ $i -lt 2000 ]; do echo "step $i"; i=$((i+1)); done; printf "no newline" >&2; exit 4',
    );
    const lines: string[] = [];
    const r = await runTool("progress", [], {
      env,
      timeoutMs: Number.POSITIVE_INFINITY,
      cwd: folder,
      maxBytes: 1024,
      onLine: (line, stream) => lines.push(`${stream}: ${line}`),
    });
    assert.equal(r.kind, "failed");
    assert.equal(r.exitCode, 4);
    assert.equal(lines[0], `stdout: ${folder}`);
    assert.equal(lines.filter((l) => l.startsWith("stdout: step")).length, 2000);
    assert.equal(lines.at(-1), "stderr: no newline");
    assert.ok(r.stdout.length <= 1024, `${r.stdout.length} bytes kept`);
    assert.ok(r.stdout.endsWith("step 1999\n"), "the tail is kept");
  });

  test("output past the cap is not read on: the group is killed and the run fails, saying why", async () => {
    tool("floods", "exec yes xim");
    const maxBytes = 64 * 1024;
    const r = await runTool("floods", [], { env, timeoutMs: 120_000, maxBytes });
    assert.equal(r.kind, "failed");
    assert.equal(r.exitCode, null);
    assert.match(r.reason, /printed more than 65\.5 KB on stdout/);
    assert.equal(r.stdout.length, maxBytes, "keeps exactly the cap");
  });

  test("a run whose deadline has already passed starts nothing", async () => {
    const marker = join(bin, "started");
    tool("marks", `touch ${marker}`);
    const r = await runTool("marks", [], { env, timeoutMs: 30_000, signal: AbortSignal.abort() });
    assert.equal(existsSync(marker), false);
    assert.equal(r.kind, "timeout");
    assert.match(r.reason, /stopped at the caller's deadline/);
  });
});
