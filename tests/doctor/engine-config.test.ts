import assert from "node:assert/strict";
import { type ChildProcess, spawn } from "node:child_process";
import { existsSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { after, describe, test } from "node:test";
import { loadConfig } from "../../src/core/config/load.ts";
import { configForDoctor, runDoctor } from "../../src/doctor/doctor.ts";
import { cleanup, doctor, FIXTURE_BIN, pathWith, tempDir } from "./helpers.ts";

const children: ChildProcess[] = [];
after(() => {
  for (const c of children) c.kill("SIGKILL");
  cleanup();
});

describe("vllm-installed", () => {
  test("the launcher on PATH answers --version", async () => {
    const r = await doctor({ PATH: pathWith(["vllm"]) }, { selectors: ["vllm-installed"] });
    assert.equal(r["vllm-installed"].status, "ok");
    assert.match(r["vllm-installed"].evidence, /vllm: vLLM 0\.11\.0$/);
  });

  test("XEROTIER_AGENT_VLLM_PATH pointing at nothing fails with the install fix", async () => {
    const r = await doctor(
      { PATH: pathWith([]), XEROTIER_AGENT_VLLM_PATH: "/opt/none/xerotier-vllm" },
      { selectors: ["vllm-installed"] },
    );
    assert.equal(r["vllm-installed"].status, "fail");
    assert.match(r["vllm-installed"].evidence, /\/opt\/none\/xerotier-vllm not found/);
    assert.match(r["vllm-installed"].fix ?? "", /pip install vllm/);
  });

  test("a launcher that exits non-zero fails with its first line", async () => {
    const bad = join(tempDir(), "vllm");
    writeFileSync(bad, "#!/bin/sh\necho 'ModuleNotFoundError: No module named torch' >&2\nexit 1\n", {
      mode: 0o755,
    });
    const r = await doctor(
      { PATH: "/usr/bin:/bin", XEROTIER_AGENT_VLLM_PATH: bad },
      { selectors: ["vllm-installed"] },
    );
    assert.equal(r["vllm-installed"].status, "fail");
    assert.match(r["vllm-installed"].evidence, /No module named torch/);
  });

  test("the simulated engine skips it", async () => {
    const r = await doctor({ XEROTIER_AGENT_ENGINE: "sim" }, { selectors: ["vllm-installed"] });
    assert.equal(r["vllm-installed"].status, "skipped");
  });
});

/** A process whose command line is `node <tmp>/vllm serve`, listening where told: what /proc shows of a vLLM. */
async function fakeEngine(hosts: string[]): Promise<ChildProcess> {
  const script = join(tempDir(), "vllm");
  writeFileSync(
    script,
    `const net = require("node:net");
let n = 0;
for (const h of ${JSON.stringify(hosts)}) net.createServer().listen(0, h, () => { if (++n === ${hosts.length}) process.stdout.write("ready\\n"); });
setInterval(() => {}, 1000);
`,
  );
  const child = spawn(process.execPath, [script, "serve", "model"], {
    stdio: ["ignore", "pipe", "inherit"],
  });
  children.push(child);
  await new Promise<void>((resolve, reject) => {
    child.stdout?.once("data", () => resolve());
    child.once("exit", (code) => reject(new Error(`fake engine exited ${code}`)));
  });
  return child;
}

describe("engine-ports: the engine's listeners are on loopback only", () => {
  test("no engine running is skipped with the reason", async () => {
    const r = await doctor(
      { XEROTIER_AGENT_VLLM_PATH: "/nonexistent/engine-launcher-xyz" },
      { selectors: ["engine-ports"] },
    );
    // Another vLLM could run on a shared machine; the test only needs the check to say why it skipped.
    if (r["engine-ports"].status === "skipped") assert.match(r["engine-ports"].evidence, /no vLLM process/);
  });

  test("a vLLM listening on 0.0.0.0 fails, naming the port and the pickle CVEs", {
    timeout: 30_000,
  }, async () => {
    const child = await fakeEngine(["127.0.0.1", "0.0.0.0"]);
    const r = await doctor({}, { selectors: ["engine-ports"] });
    assert.equal(r["engine-ports"].status, "fail", r["engine-ports"].evidence);
    assert.match(r["engine-ports"].evidence, new RegExp(`0\\.0\\.0\\.0:\\d+ \\(pid ${child.pid}\\)`));
    assert.match(r["engine-ports"].fix ?? "", /CVE-2025-30165/);
    child.kill("SIGKILL");
    await new Promise((res) => child.once("exit", res));
  });

  test("a vLLM listening on loopback only is ok", { timeout: 30_000 }, async () => {
    const v6 = existsSync("/proc/net/if_inet6");
    const child = await fakeEngine(v6 ? ["127.0.0.1", "::1"] : ["127.0.0.1"]);
    const r = await doctor({}, { selectors: ["engine-ports"] });
    const c = r["engine-ports"];
    // Other vLLM test doubles may run on a shared machine: this engine's listeners must be the loopback ones.
    if (c.status === "fail") assert.doesNotMatch(c.evidence, new RegExp(`\\(pid ${child.pid}\\)`));
    else {
      assert.equal(c.status, "ok", c.evidence);
      assert.match(c.evidence, new RegExp(`127\\.0\\.0\\.1:\\d+ \\(pid ${child.pid}\\)`));
      if (v6) assert.match(c.evidence, new RegExp(`\\[::1\\]:\\d+ \\(pid ${child.pid}\\)`));
    }
    child.kill("SIGKILL");
    await new Promise((res) => child.once("exit", res));
  });
});

describe("configuration checks", () => {
  test("an invalid value fails config-valid while the other checks still run on the rest", async () => {
    const home = tempDir();
    const env = {
      HOME: home,
      XEROTIER_AGENT_METRICS_PORT: "99999",
      XEROTIER_AGENT_LEASE_DURATION_MS: "12000",
    };
    const { loaded, problems } = configForDoctor(() => loadConfig({ env, cwd: home }), env, home);
    assert.ok(problems && problems.length === 2);
    assert.equal(loaded.config.metricsPort, 9094);
    const report = await runDoctor({ loaded, configProblems: problems, env, selectors: ["configuration"] });
    const by = Object.fromEntries(report.checks.map((c) => [c.id, c]));
    assert.equal(by["config-valid"].status, "fail");
    assert.match(by["config-valid"].evidence, /XEROTIER_AGENT_METRICS_PORT=99999 \(from environment\)/);
    assert.equal(by["lease-ratio"].status, "fail");
    assert.match(by["lease-ratio"].evidence, /at least 2x/);
  });

  test("an unknown XEROTIER_AGENT_ variable warns with the likely name", async () => {
    const r = await doctor({ XEROTIER_AGENT_LEASE_DURATON_MS: "30000" }, { selectors: ["config-valid"] });
    assert.equal(r["config-valid"].status, "warn");
    assert.match(r["config-valid"].evidence, /did you mean XEROTIER_AGENT_LEASE_DURATION_MS/);
  });

  test("a lease of 2.5 renewal intervals warns; 3x is ok", async () => {
    const tight = await doctor({ XEROTIER_AGENT_LEASE_DURATION_MS: "25000" }, { selectors: ["lease-ratio"] });
    assert.equal(tight["lease-ratio"].status, "warn");
    assert.match(tight["lease-ratio"].fix ?? "", /XEROTIER_AGENT_LEASE_DURATION_MS=30000/);
    const fine = await doctor({}, { selectors: ["lease-ratio"] });
    assert.equal(fine["lease-ratio"].status, "ok");
  });

  test("insecure enrollment warns; a plain-HTTP router URL without it fails", async () => {
    const insecure = await doctor(
      { XEROTIER_AGENT_ALLOW_INSECURE: "1" },
      { selectors: ["insecure-enrollment"] },
    );
    assert.equal(insecure["insecure-enrollment"].status, "warn");
    const plain = await doctor(
      { XEROTIER_AGENT_ROUTER_URL: "http://router:8443" },
      { selectors: ["insecure-enrollment"] },
    );
    assert.equal(plain["insecure-enrollment"].status, "fail");
  });

  test("the default salt secret warns; a custom one is ok and never printed", async () => {
    const def = await doctor({}, { selectors: ["salt-secret"] });
    assert.equal(def["salt-secret"].status, "warn");
    assert.match(def["salt-secret"].fix ?? "", /openssl rand -hex 32/);
    const custom = await doctor(
      { XEROTIER_AGENT_VLLM_SALT_SECRET: "tenant-salt-abc123" },
      { selectors: ["salt-secret"] },
    );
    assert.equal(custom["salt-secret"].status, "ok");
    assert.doesNotMatch(JSON.stringify(custom), /tenant-salt-abc123/);
  });

  test("the fixture bin holds the vllm double used above", () => {
    assert.ok(FIXTURE_BIN.endsWith("tests/fixtures/bin"));
  });
});
