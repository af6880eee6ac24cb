/**
 * `xim doctor` as a command: in process through runCli for the options and
 * output formats, and as a real child process for the acceptance run on
 * this machine (no GPU): JSON that parses through a pipe, the GPU reported
 * missing with its fix, the machine's real sysctl values, one result per check.
 */
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { existsSync, mkdirSync, readFileSync, writeFileSync } from "node:fs";
import { join, resolve } from "node:path";
import { after, describe, test } from "node:test";
import { commands } from "../../src/cli/commands.ts";
import { doctorCommand, formatReport, useColour } from "../../src/cli/doctor.ts";
import { recordingIo } from "../../src/cli/io.ts";
import { runCli } from "../../src/cli/program.ts";
import { ALL_CHECKS } from "../../src/doctor/all-checks.ts";
import { cleanup, pathWith, tempDir } from "./helpers.ts";

after(cleanup);

const REPO = resolve(import.meta.dirname, "../..");
const root = { version: () => "9.9.9", verboseVersion: async () => "verbose\n", commands };

async function xim(argv: string[], env: Record<string, string> = {}) {
  const home = tempDir("xim-home-");
  const rec = recordingIo({ HOME: home, PATH: pathWith(["lscpu"]), ...env }, home);
  const code = await runCli(argv, rec.io, root);
  return { code, stdout: rec.stdout(), stderr: rec.stderr() };
}

describe("xim doctor on this machine, as a child process", () => {
  test("`xim doctor --json | node -e` parses; every check reports; GPU missing with a fix; real sysctls", {
    timeout: 60_000,
  }, () => {
    const home = tempDir("xim-home-");
    const env = { HOME: home, PATH: `/usr/bin:/bin`, NODE: process.execPath };
    const pipe = spawnSync(
      "sh",
      [
        "-c",
        `"$NODE" main.ts doctor --json | "$NODE" -e 'const r = JSON.parse(require("fs").readFileSync(0, "utf8")); process.stdout.write(String(r.checks.length))'`,
      ],
      { cwd: REPO, env, encoding: "utf8" },
    );
    assert.equal(pipe.stdout, String(ALL_CHECKS.length), pipe.stderr);

    const run = spawnSync(process.execPath, ["main.ts", "doctor", "--json"], {
      cwd: REPO,
      env,
      encoding: "utf8",
    });
    const report = JSON.parse(run.stdout);
    assert.equal(report.schemaVersion, 1);
    assert.deepEqual(Object.keys(report), ["schemaVersion", "ok", "summary", "durationMs", "checks"]);
    for (const c of report.checks) {
      assert.deepEqual(Object.keys(c), ["id", "group", "title", "status", "evidence", "fix", "durationMs"]);
      assert.ok(["ok", "warn", "fail", "skipped"].includes(c.status));
      if (c.status === "warn" || c.status === "fail") assert.ok(c.fix, `${c.id} has no fix`);
    }
    assert.equal(run.status, report.summary.fail > 0 ? 1 : 0);
    assert.equal(report.ok, report.summary.fail === 0);
    // The acceptance bound of the issue; the run's own deadline is 10 s, so this cannot flake upward.
    assert.ok(report.durationMs < 10_000, `took ${report.durationMs} ms`);
    const by = Object.fromEntries(report.checks.map((c: { id: string }) => [c.id, c]));
    const gpu = existsSync("/dev/nvidiactl") || existsSync("/usr/bin/nvidia-smi") || existsSync("/dev/kfd");
    if (gpu) assert.equal(by["gpu-driver"].status, "ok", by["gpu-driver"].evidence);
    else {
      assert.equal(by["gpu-driver"].status, "warn");
      assert.match(by["gpu-driver"].evidence, /no GPU/);
      assert.match(by["gpu-driver"].fix, /nvidia-smi/);
    }
    const wmem = readFileSync("/proc/sys/net/core/wmem_max", "utf8").trim();
    const rmem = readFileSync("/proc/sys/net/core/rmem_max", "utf8").trim();
    assert.match(
      by["socket-buffers"].evidence,
      new RegExp(`net\\.core\\.wmem_max=${wmem}, net\\.core\\.rmem_max=${rmem}`),
    );
  });
});

describe("xim doctor options and output", () => {
  test("human output is grouped by area with symbols, a fix under each problem and a summary line", async () => {
    const r = await xim(["doctor", "--check", "configuration"]);
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stdout, /^Configuration\n/);
    assert.match(r.stdout, / {2}✓ Configuration validates \[config-valid\]\n {6}every setting is valid\n/);
    assert.match(
      r.stdout,
      / {2}! Tenant salt secret is not the default \[salt-secret\]\n.*\n {6}fix: Set XEROTIER_AGENT_VLLM_SALT_SECRET/,
    );
    assert.match(r.stdout, /\n0 problems, 1 warning \(3 ok, 0 skipped\) in \d+\.\d s\n$/);
    assert.doesNotMatch(r.stdout, /\u001b\[/, "no colour when stdout is not a terminal");
  });

  test("colour only on a terminal, and never with NO_COLOR", () => {
    const tty = recordingIo({}).io;
    tty.stdoutIsTty = true;
    assert.equal(useColour(tty), true);
    const noColor = recordingIo({ NO_COLOR: "1" }).io;
    noColor.stdoutIsTty = true;
    assert.equal(useColour(noColor), false);
    const report = {
      checks: [
        {
          id: "x",
          group: "kernel" as const,
          title: "X",
          status: "fail" as const,
          evidence: "e",
          fix: "f",
          durationMs: 1,
        },
      ],
      summary: { ok: 0, warn: 0, fail: 1, skipped: 0 },
      durationMs: 5,
    };
    assert.match(formatReport(report, true), /\u001b\[31m✗\u001b\[0m X \[x\]/);
    assert.match(
      formatReport(report, false),
      /^Kernel\n {2}✗ X \[x\]\n {6}e\n {6}fix: f\n\n1 problem, 0 warnings/,
    );
  });

  test("a failing check makes the exit code 1", async () => {
    const r = await xim(["doctor", "--check", "insecure-enrollment", "--router", "http://router:8443"]);
    assert.equal(r.code, 1);
    assert.match(r.stdout, /1 problem, 0 warnings/);
  });

  test("settings are flags, as for every command", () => {
    assert.ok(doctorCommand.settings?.includes("lmcacheRedisUrl"));
    assert.ok(doctorCommand.settings?.includes("vllmPath"));
  });

  test("--check takes ids and groups, repeated or comma-separated", async () => {
    const r = await xim([
      "doctor",
      "--json",
      "--check",
      "socket-buffers,salt-secret",
      "--check",
      "lease-ratio",
    ]);
    const ids = JSON.parse(r.stdout).checks.map((c: { id: string }) => c.id);
    assert.deepEqual(ids, ["socket-buffers", "lease-ratio", "salt-secret"]);
  });

  test("an unknown check id is a usage error with a suggestion", async () => {
    const r = await xim(["doctor", "--check", "socket-bufers"]);
    assert.equal(r.code, 2);
    assert.match(r.stderr, /unknown check 'socket-bufers'\. Did you mean 'socket-buffers'\?/);
  });

  test("--timeout must be a positive number of seconds", async () => {
    const r = await xim(["doctor", "--timeout", "0"]);
    assert.equal(r.code, 2);
    assert.match(r.stderr, /--timeout 0: expected seconds/);
  });

  test("--list-checks lists every id", async () => {
    const r = await xim(["doctor", "--list-checks"]);
    assert.equal(r.code, 0);
    for (const c of ALL_CHECKS) assert.match(r.stdout, new RegExp(`^${c.id} `, "m"));
  });

  test("XIM_PROC_ROOT points the kernel check at a fake /proc", async () => {
    const proc = tempDir("xim-proc-");
    mkdirSync(join(proc, "sys/net/core"), { recursive: true });
    writeFileSync(join(proc, "sys/net/core/wmem_max"), "212992\n");
    writeFileSync(join(proc, "sys/net/core/rmem_max"), "212992\n");
    const r = await xim(["doctor", "--json", "--check", "socket-buffers"], {
      XIM_PROC_ROOT: proc,
      XIM_IN_CONTAINER: "0",
    });
    const [c] = JSON.parse(r.stdout).checks;
    assert.equal(c.status, "warn");
    assert.match(c.fix, /sudo sysctl -w net\.core\.wmem_max=4194304/);
  });

  test("under env -i (no PATH, so no lscpu) cpu-flags names the CPU from /proc/cpuinfo, not an unknown one", async () => {
    // tests/fixtures/cpu/README.md: /proc and /sys of a real 2-vCPU EPYC VM.
    const vm = resolve(import.meta.dirname, "../fixtures/cpu/epyc-2vcpu-vm");
    const home = tempDir("xim-home-");
    const rec = recordingIo(
      { HOME: home, XIM_PROC_ROOT: join(vm, "proc"), XIM_SYS_ROOT: join(vm, "sys"), XIM_IN_CONTAINER: "0" },
      home,
    );
    await runCli(["doctor", "--json", "--check", "cpu-flags"], rec.io, root);
    const [c] = JSON.parse(rec.stdout()).checks;
    assert.equal(c.status, "ok", c.evidence);
    assert.match(c.evidence, /^AMD EPYC: AVX-512 with BF16 and VNNI/);
  });

  test("an invalid configuration is reported by config-valid instead of stopping doctor", async () => {
    const r = await xim(["doctor", "--json", "--check", "config-valid,socket-buffers"], {
      XEROTIER_AGENT_METRICS_PORT: "0",
    });
    assert.equal(r.code, 1);
    const by = Object.fromEntries(JSON.parse(r.stdout).checks.map((c: { id: string }) => [c.id, c]));
    assert.equal(by["config-valid"].status, "fail");
    assert.match(by["config-valid"].evidence, /XEROTIER_AGENT_METRICS_PORT=0/);
    assert.notEqual(by["socket-buffers"].status, "fail");
  });
});
