import assert from "node:assert/strict";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, describe, test } from "node:test";
import { ConfigError } from "../../src/core/config/errors.ts";
import { describeSource, loadConfig, settingInfos } from "../../src/core/config/load.ts";

const dir = mkdtempSync(join(tmpdir(), "xim-config-"));
after(() => rmSync(dir, { recursive: true, force: true }));
const HOME = { HOME: dir };

function problems(fn: () => unknown): string[] {
  try {
    fn();
  } catch (err) {
    assert.ok(err instanceof ConfigError, `expected ConfigError, got ${String(err)}`);
    assert.equal(err.exitCode, 78);
    return err.problems.map((p) => `${p.env}=${p.value} (from ${p.source}): ${p.message}`);
  }
  assert.fail("expected a ConfigError");
}

describe("configuration precedence: flag > environment > .env file > default", () => {
  const envFile = join(dir, "precedence.env");
  writeFileSync(envFile, "XEROTIER_AGENT_METRICS_PORT=3001\n");
  const cases: Array<{
    name: string;
    flag?: string;
    env?: string;
    file: boolean;
    want: number;
    source: string;
  }> = [
    { name: "default only", file: false, want: 9094, source: "default" },
    { name: "file beats default", file: true, want: 3001, source: `file ${envFile}` },
    { name: "env beats file", env: "3002", file: true, want: 3002, source: "environment" },
    {
      name: "flag beats env and file",
      flag: "3003",
      env: "3002",
      file: true,
      want: 3003,
      source: "flag --metrics-port",
    },
    { name: "empty env counts as unset", env: "", file: true, want: 3001, source: `file ${envFile}` },
  ];
  for (const c of cases) {
    test(c.name, () => {
      const env: Record<string, string> = { ...HOME };
      if (c.env !== undefined) env.XEROTIER_AGENT_METRICS_PORT = c.env;
      if (c.file) env.XEROTIER_AGENT_ENV_FILE = envFile;
      const loaded = loadConfig({ env, cwd: dir, flags: c.flag ? { metricsPort: c.flag } : {} });
      assert.equal(loaded.config.metricsPort, c.want);
      assert.equal(describeSource(loaded.sources.metricsPort), c.source);
    });
  }

  test("./.env in the working folder is read when no file is named", () => {
    const cwd = mkdtempSync(join(dir, "cwd-"));
    writeFileSync(join(cwd, ".env"), "XEROTIER_AGENT_LOG_LEVEL=debug\n");
    assert.equal(loadConfig({ env: HOME, cwd }).config.logLevel, "debug");
  });

  test("a named .env file that does not exist is a configuration error", () => {
    const lines = problems(() =>
      loadConfig({ env: { ...HOME, XEROTIER_AGENT_ENV_FILE: join(dir, "missing.env") }, cwd: dir }),
    );
    assert.match(
      lines[0],
      /XEROTIER_AGENT_ENV_FILE=.*missing\.env \(from environment\): the file does not exist/,
    );
  });
});

describe("defaults equal the seed document's", () => {
  const { config } = loadConfig({ env: HOME, cwd: dir });
  const want = {
    streamingSocketEnabled: true,
    flowControlEnabled: true,
    flowControlWindowBytes: 65536,
    flowControlReplenishThreshold: 0.5,
    flowControlPauseThresholdBytes: 262144,
    flowControlTimeoutSeconds: 30,
    leaseRenewalIntervalMs: 10000,
    leaseDurationMs: 30000,
    modelPullMaxAttempts: 5,
    modelPullBaseDelayMs: 1000,
    modelPullMaxDelayMs: 15000,
    modelCacheMaxSizeGb: 100,
    autoConfig: true,
    autoConfigureGpu: true,
    autoCudaMitigation: true,
    moeConfigEnabled: true,
    speculativeEnabled: false,
    speculativeNgramFallback: false,
    vllmDisableCudaGraphs: false,
    vllmDisableCustomAllReduce: false,
    allowInsecure: false,
    lmcacheEnabled: false,
    logLevel: "info",
    metricsPort: 9094,
    vllmPath: "vllm",
  };
  for (const [key, value] of Object.entries(want)) {
    test(`${key} defaults to ${value}`, () => assert.equal(config[key as keyof typeof config], value));
  }
  test("auto settings are unset by default", () => {
    assert.equal(config.maxConcurrent, undefined);
    assert.equal(config.tensorParallelSize, undefined);
    assert.equal(config.maxModelLen, undefined);
    assert.equal(config.vllmQuantization, undefined);
    assert.equal(config.speculativeMethod, undefined);
  });
  test("paths follow XDG", () => {
    assert.equal(config.configDir, join(dir, ".config", "xerotier"));
    const xdg = loadConfig({ env: { ...HOME, XDG_CONFIG_HOME: "/x/cfg" }, cwd: dir }).config;
    assert.equal(xdg.configDir, "/x/cfg/xerotier");
  });
});

describe("values are parsed and checked", () => {
  const parse = (env: Record<string, string>) => loadConfig({ env: { ...HOME, ...env }, cwd: dir }).config;

  for (const word of ["1", "true", "TRUE", "yes", "Yes", "on"]) {
    test(`boolean "${word}" is true`, () =>
      assert.equal(parse({ XEROTIER_AGENT_SPECULATIVE_ENABLED: word }).speculativeEnabled, true));
  }
  for (const word of ["0", "false", "False", "no", "NO", "off"]) {
    test(`boolean "${word}" is false`, () =>
      assert.equal(parse({ XEROTIER_AGENT_FLOW_CONTROL_ENABLED: word }).flowControlEnabled, false));
  }

  test("a bad boolean names the variable, the value and the accepted words", () => {
    const [line] = problems(() => parse({ XEROTIER_AGENT_FLOW_CONTROL_ENABLED: "maybe" }));
    assert.equal(
      line,
      "XEROTIER_AGENT_FLOW_CONTROL_ENABLED=maybe (from environment): expected a boolean: 1/0, true/false, yes/no or on/off",
    );
  });

  test("a fraction outside 0.0-1.0 is refused with the range", () => {
    const [line] = problems(() => parse({ XEROTIER_AGENT_FLOW_CONTROL_REPLENISH_THRESHOLD: "1.5" }));
    assert.equal(
      line,
      "XEROTIER_AGENT_FLOW_CONTROL_REPLENISH_THRESHOLD=1.5 (from environment): expected a fraction from 0.0 to 1.0",
    );
  });

  test("ports are 1-65535", () => {
    const [line] = problems(() => parse({ XEROTIER_AGENT_METRICS_PORT: "0" }));
    assert.match(line, /XEROTIER_AGENT_METRICS_PORT=0 .*expected an integer from 1 to 65535/);
  });

  test("sizes must be greater than zero", () => {
    const [line] = problems(() => parse({ XEROTIER_AGENT_MODEL_CACHE_MAX_SIZE_GB: "0" }));
    assert.match(line, /greater than 0 GB/);
  });

  test("enums list their values", () => {
    const [line] = problems(() => parse({ XEROTIER_AGENT_VLLM_QUANTIZATION: "int3" }));
    assert.match(
      line,
      /XEROTIER_AGENT_VLLM_QUANTIZATION=int3 .*expected "auto" or one of: awq, awq_marlin, gptq/,
    );
  });

  test("MAX_CONCURRENT 0 or auto means derived", () => {
    assert.equal(parse({ XEROTIER_AGENT_MAX_CONCURRENT: "0" }).maxConcurrent, undefined);
    assert.equal(parse({ XEROTIER_AGENT_MAX_CONCURRENT: "auto" }).maxConcurrent, undefined);
    assert.equal(parse({ XEROTIER_AGENT_MAX_CONCURRENT: "12" }).maxConcurrent, 12);
  });

  test("VLLM_ARGS splits on spaces and honours quotes; VLLM_ENV skips empty values", () => {
    const c = parse({
      XEROTIER_AGENT_VLLM_ARGS: `--enforce-eager --chat-template '{{ x }} y' --x="a b"`,
      XEROTIER_AGENT_VLLM_ENV: "A=1 EMPTY= B=x=y",
    });
    assert.deepEqual(c.vllmArgs, ["--enforce-eager", "--chat-template", "{{ x }} y", "--x=a b"]);
    assert.deepEqual(c.vllmEnv, { A: "1", B: "x=y" });
  });

  test("every problem is reported at once, one line each", () => {
    const lines = problems(() =>
      parse({
        XEROTIER_AGENT_METRICS_PORT: "x",
        XEROTIER_AGENT_LOG_LEVEL: "loud",
        XEROTIER_AGENT_LEASE_RENEWAL_INTERVAL_MS: "-1",
      }),
    );
    assert.equal(lines.length, 3);
  });
});

describe("cross-field rules", () => {
  test("a lease duration under 2x the renewal interval is refused with the reason", () => {
    const [line] = problems(() =>
      loadConfig({ env: { ...HOME, XEROTIER_AGENT_LEASE_DURATION_MS: "15000" }, cwd: dir }),
    );
    assert.match(
      line,
      /^XEROTIER_AGENT_LEASE_DURATION_MS=15000 \(from environment\): must be at least 2x XEROTIER_AGENT_LEASE_RENEWAL_INTERVAL_MS \(10000 ms\)/,
    );
  });

  test("exactly 2x is accepted", () => {
    const { config } = loadConfig({
      env: {
        ...HOME,
        XEROTIER_AGENT_LEASE_DURATION_MS: "2000",
        XEROTIER_AGENT_LEASE_RENEWAL_INTERVAL_MS: "1000",
      },
      cwd: dir,
    });
    assert.equal(config.leaseDurationMs, 2000);
  });

  for (const method of ["eagle", "medusa"]) {
    test(`${method} without a draft model path is refused`, () => {
      const [line] = problems(() =>
        loadConfig({ env: { ...HOME, XEROTIER_AGENT_SPECULATIVE_METHOD: method }, cwd: dir }),
      );
      assert.match(line, new RegExp(`SPECULATIVE_METHOD=${method} .*needs a draft model`));
    });
  }

  test("eagle with a draft model path is accepted", () => {
    const { config } = loadConfig({
      env: {
        ...HOME,
        XEROTIER_AGENT_SPECULATIVE_METHOD: "eagle",
        XEROTIER_AGENT_SPECULATIVE_DRAFT_MODEL_PATH: "/m/eagle",
      },
      cwd: dir,
    });
    assert.equal(config.speculativeMethod, "eagle");
  });
});

describe("secrets and typos", () => {
  test("secret values never appear in a problem line", () => {
    const err = (() => {
      try {
        loadConfig({
          env: { ...HOME, XEROTIER_AGENT_JOIN_KEY: "xjk_p_s3cret", XEROTIER_AGENT_METRICS_PORT: "x" },
          cwd: dir,
        });
      } catch (e) {
        return e as Error;
      }
    })();
    assert.ok(err);
    assert.doesNotMatch(err.message, /s3cret/);
  });

  test("secrets serialise as [redacted]", () => {
    const { config } = loadConfig({ env: { ...HOME, XEROTIER_AGENT_VLLM_SALT_SECRET: "s3cret" }, cwd: dir });
    assert.equal(config.vllmSaltSecret.reveal(), "s3cret");
    assert.doesNotMatch(JSON.stringify(config), /s3cret/);
    assert.doesNotMatch(String(config.vllmSaltSecret), /s3cret/);
  });

  test("an unknown XEROTIER_AGENT_ variable is a warning with a suggestion", () => {
    const { warnings } = loadConfig({ env: { ...HOME, XEROTIER_AGENT_LEASE_DURATON_MS: "1" }, cwd: dir });
    assert.deepEqual(warnings, [
      "unknown variable XEROTIER_AGENT_LEASE_DURATON_MS (from environment); did you mean XEROTIER_AGENT_LEASE_DURATION_MS?",
    ]);
  });
});

test("every setting has a variable, a flag, a group and documentation", () => {
  for (const s of settingInfos) {
    assert.match(s.env, /^XEROTIER_AGENT_[A-Z0-9_]+$/);
    assert.match(s.flag, /^[a-z][a-z0-9-]+$/);
    assert.ok(s.doc.length > 10, `${s.env} needs documentation`);
    assert.ok(s.group);
  }
  assert.equal(new Set(settingInfos.map((s) => s.flag)).size, settingInfos.length, "flags are unique");
});
