/**
 * The router's settings table (src/router/settings.ts): flag > XIM_ROUTER_*
 * variable > default, and every bad value named with its variable, the
 * value, where it came from and what is accepted.
 */
import assert from "node:assert/strict";
import { describe, test } from "node:test";
import { ConfigError } from "../../src/core/config/errors.ts";
import { ExitCode } from "../../src/core/errors.ts";
import { loadRouterSettings, routerSettingInfos } from "../../src/router/settings.ts";

function problemsOf(fn: () => unknown): string {
  try {
    fn();
  } catch (err) {
    assert.ok(err instanceof ConfigError, String(err));
    assert.equal(err.exitCode, ExitCode.config);
    return err.message;
  }
  assert.fail("no ConfigError was thrown");
}

describe("router settings", () => {
  test("without flags or variables every setting has the default serve always had", () => {
    const { settings, warnings } = loadRouterSettings({ flags: {}, env: {} });
    // Unset optional settings (advertise host, TLS files, metrics port) are absent.
    assert.deepEqual(settings, {
      enrollListen: { host: "0.0.0.0", port: 8443 },
      controlBind: "tcp://0.0.0.0:5555",
      streamingBind: "tcp://0.0.0.0:5556",
      insecureHttp: false,
      insecureZmq: false,
      insecureZmqAllowRemote: false,
      httpHost: "0.0.0.0",
      httpPort: 8080,
      metricsHost: "127.0.0.1",
      queueMax: 10,
      queueTimeoutMs: 30000,
      flowWindowBytes: 65536,
      flowReplenishThreshold: 0.5,
      flowMaxEventBytes: 1048576,
      requestDeadlineMs: 0,
    });
    assert.deepEqual(warnings, []);
  });

  test("every setting has an XIM_ROUTER_* variable and a flag named after it", () => {
    for (const s of routerSettingInfos) {
      assert.match(s.env, /^XIM_ROUTER_[A-Z_]+$/);
      assert.equal(s.flag, s.env.slice("XIM_ROUTER_".length).toLowerCase().replaceAll("_", "-"));
    }
  });

  test("a variable sets a setting, a flag beats it, and an empty variable counts as unset", () => {
    const env = {
      XIM_ROUTER_HTTP_PORT: "9000",
      XIM_ROUTER_QUEUE_MAX: "3",
      XIM_ROUTER_INSECURE_HTTP: "yes",
      XIM_ROUTER_ENROLL_LISTEN: "[::1]:0",
      XIM_ROUTER_METRICS_PORT: "",
    };
    const fromEnv = loadRouterSettings({ flags: {}, env }).settings;
    assert.equal(fromEnv.httpPort, 9000);
    assert.equal(fromEnv.queueMax, 3);
    assert.equal(fromEnv.insecureHttp, true);
    assert.deepEqual(fromEnv.enrollListen, { host: "::1", port: 0 });
    assert.equal(fromEnv.metricsPort, undefined);
    const flagged = loadRouterSettings({
      flags: { httpPort: "9001", insecureHttp: "false", queueMax: undefined },
      env,
    }).settings;
    assert.equal(flagged.httpPort, 9001);
    assert.equal(flagged.insecureHttp, false);
    assert.equal(flagged.queueMax, 3);
    // A switch given without a word (`--insecure-zmq`) is true.
    assert.equal(loadRouterSettings({ flags: { insecureZmq: true }, env: {} }).settings.insecureZmq, true);
  });

  test("bad values are each named with the variable, the value, the source and what is accepted", () => {
    const message = problemsOf(() =>
      loadRouterSettings({
        flags: { flowReplenishThreshold: "2" },
        env: { XIM_ROUTER_QUEUE_TIMEOUT_MS: "0", XIM_ROUTER_ENROLL_LISTEN: "router:http" },
      }),
    );
    assert.match(message, /3 problems/);
    assert.match(
      message,
      /XIM_ROUTER_QUEUE_TIMEOUT_MS=0 \(from environment\): expected an integer of at least 1/,
    );
    assert.match(message, /XIM_ROUTER_ENROLL_LISTEN=router:http \(from environment\): expected HOST:PORT/);
    assert.match(
      message,
      /XIM_ROUTER_FLOW_REPLENISH_THRESHOLD=2 \(from flag --flow-replenish-threshold\): expected a fraction from 0\.0 to 1\.0/,
    );
    assert.match(
      problemsOf(() => loadRouterSettings({ flags: {}, env: { XIM_ROUTER_HTTP_PORT: "65536" } })),
      /HTTP_PORT=65536 .*from 0 to 65535/,
    );
  });

  test("an unknown XIM_ROUTER_* variable is a warning with the nearest name; the state folder's is known", () => {
    const { warnings } = loadRouterSettings({
      flags: {},
      env: { XIM_ROUTER_HTTP_PROT: "9000", XIM_ROUTER_STATE_DIR: "/var/lib/xim-router" },
    });
    assert.deepEqual(warnings, [
      "unknown variable XIM_ROUTER_HTTP_PROT (from environment); did you mean XIM_ROUTER_HTTP_PORT?",
    ]);
  });
});
