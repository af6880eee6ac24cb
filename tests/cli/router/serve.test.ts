/**
 * `xim router serve` takes each setting from its flag, else its XIM_ROUTER_*
 * variable, else the default: real router processes on loopback addresses
 * with ports chosen by the OS, stopped in `finally`.
 */
import assert from "node:assert/strict";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, describe, test } from "node:test";
import { commands } from "../../../src/cli/commands.ts";
import { recordingIo } from "../../../src/cli/io.ts";
import { runCli } from "../../../src/cli/program.ts";
import { routerSettingInfos } from "../../../src/router/settings.ts";
import { baseEnv, type Env, XimProcess, xim } from "../../router/harness.ts";

const home = mkdtempSync(join(tmpdir(), "xim-serve-settings-"));
after(() => rmSync(home, { recursive: true, force: true }));

/** Every address of the router on loopback, given by variables only. */
const LOOPBACK_ENV: Env = {
  XIM_ROUTER_ENROLL_LISTEN: "127.0.0.1:0",
  XIM_ROUTER_CONTROL_BIND: "tcp://127.0.0.1:0",
  XIM_ROUTER_STREAMING_BIND: "tcp://127.0.0.1:0",
  XIM_ROUTER_HTTP_HOST: "127.0.0.1",
  XIM_ROUTER_HTTP_PORT: "0",
};

/** `xim ARGV` through the real parser in this process, for what ends before the router starts. */
async function inProcess(argv: string[]) {
  const rec = recordingIo({ HOME: home }, home);
  const code = await runCli(argv, rec.io, { version: () => "0", verboseVersion: async () => "", commands });
  return { code, stdout: rec.stdout(), stderr: rec.stderr() };
}

/** Start `xim router serve --json`, return the addresses it printed, and stop it. */
async function servedAddresses(name: string, env: Env, args: string[] = []) {
  const router = new XimProcess(
    ["router", "serve", "--state", join(home, name), "--json", ...args],
    baseEnv(home, { ...LOOPBACK_ENV, ...env }),
  );
  try {
    // Generous: a first start makes a TLS certificate and a CURVE key pair on a loaded 2-core machine.
    const line = await router.line((l) => l.startsWith("{"), 60_000);
    return JSON.parse(line) as { enrollUrl: string; httpUrl?: string; metricsUrl?: string };
  } finally {
    await router.stop();
  }
}

describe("xim router serve settings", { timeout: 180_000 }, () => {
  test("--help shows each setting's flag with its XIM_ROUTER_* variable and its default", async () => {
    const r = await inProcess(["router", "serve", "--help"]);
    assert.equal(r.code, 0, r.stderr);
    // Descriptions wrap at 80 columns, so "env: NAME" may span a line break.
    const text = r.stdout.replace(/\s+/g, " ");
    for (const s of routerSettingInfos) {
      assert.ok(text.includes(`--${s.flag} `), `--${s.flag} missing`);
      assert.ok(
        text.includes(`(env: ${s.env}; default: ${s.defaultText ?? s.defaultValue ?? "unset"})`),
        s.env,
      );
    }
  });

  test("XIM_ROUTER_* variables set serve's settings", async () => {
    const served = await servedAddresses("env", {
      XIM_ROUTER_ADVERTISE_HOST: "from-env.invalid",
      XIM_ROUTER_METRICS_HOST: "127.0.0.1",
      XIM_ROUTER_METRICS_PORT: "0",
    });
    assert.match(served.enrollUrl, /^https:\/\/from-env\.invalid:\d+$/);
    assert.match(served.httpUrl ?? "", /^http:\/\/127\.0\.0\.1:\d+$/);
    // The metrics server runs only when its port is set: here by its variable.
    assert.match(served.metricsUrl ?? "", /^http:\/\/127\.0\.0\.1:\d+$/);
  });

  test("a flag beats its variable", async () => {
    const served = await servedAddresses("flag", { XIM_ROUTER_ADVERTISE_HOST: "from-env.invalid" }, [
      "--advertise-host",
      "from-flag.invalid",
    ]);
    assert.match(served.enrollUrl, /^https:\/\/from-flag\.invalid:\d+$/);
  });

  test("a bad variable exits 78 naming it, its value, its source and what is accepted", async () => {
    const r = await xim(
      ["router", "serve", "--state", join(home, "bad-env")],
      baseEnv(home, { ...LOOPBACK_ENV, XIM_ROUTER_QUEUE_TIMEOUT_MS: "soon" }),
      60_000, // generous: a loaded 2-core machine starts Node slowly; the process exits at once
    );
    assert.equal(r.code, 78, r.stderr);
    assert.match(
      r.stderr,
      /XIM_ROUTER_QUEUE_TIMEOUT_MS=soon \(from environment\): expected an integer of at least 1/,
    );
    assert.match(r.stderr, /xim router serve --help/);
  });

  test("a bad flag is a usage error (exit 2) naming the flag, the value and what is accepted", async () => {
    for (const [flag, value, accepted] of [
      ["--http-port", "70000", /expected an integer from 0 to 65535/],
      ["--enroll-listen", "router.internal", /expected HOST:PORT/],
      ["--insecure-http", "maybe", /expected a boolean/],
    ] as const) {
      const { code, stderr } = await inProcess(["router", "serve", flag, value]);
      assert.equal(code, 2, flag);
      assert.match(
        stderr,
        new RegExp(`option '${flag} [<\\[][^'>\\]]+[>\\]]' argument '${value}' is invalid`),
      );
      assert.match(stderr, accepted);
    }
  });
});
