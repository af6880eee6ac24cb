import assert from "node:assert/strict";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { Writable } from "node:stream";
import { after, test } from "node:test";
import { loadConfig } from "../../src/core/config/load.ts";
import { createLogger, pinoLevel } from "../../src/core/log.ts";
import { redactUrlCredentials, Secret } from "../../src/core/secret.ts";

const home = mkdtempSync(join(tmpdir(), "xim-log-"));
after(() => rmSync(home, { recursive: true, force: true }));

/** A destination that keeps every line, as buildkite's logger.NewBuffer does. */
function recorder() {
  const lines: string[] = [];
  const stream = new Writable({
    write(chunk, _enc, done) {
      lines.push(...String(chunk).split("\n").filter(Boolean));
      done();
    },
  });
  return { stream, lines };
}

test("log level names map to pino's: warning -> warn, critical -> fatal, notice -> info", () => {
  assert.equal(pinoLevel("warning"), "warn");
  assert.equal(pinoLevel("critical"), "fatal");
  assert.equal(pinoLevel("notice"), "info");
  assert.equal(pinoLevel("trace"), "trace");
});

test("lines are JSON with level names and honour the level", () => {
  const { stream, lines } = recorder();
  const log = createLogger({ level: "warning", destination: stream, pretty: false });
  log.info("hidden");
  log.warn({ component: "lease" }, "renewal late");
  assert.equal(lines.length, 1);
  const line = JSON.parse(lines[0]);
  assert.equal(line.level, "warn");
  assert.equal(line.component, "lease");
  assert.equal(line.msg, "renewal late");
});

test("a whole configuration object with secrets logs no secret", () => {
  const { config } = loadConfig({
    env: {
      HOME: home,
      XEROTIER_AGENT_JOIN_KEY: "xjk_proj_JOINSECRET",
      XEROTIER_AGENT_VLLM_SALT_SECRET: "SALTSECRET",
      XEROTIER_AGENT_LMCACHE_REDIS_URL: "redis://user:REDISPASS@127.0.0.1:6379",
    },
    cwd: home,
  });
  const { stream, lines } = recorder();
  const log = createLogger({ level: "trace", destination: stream, pretty: false });
  log.info({ config }, "effective configuration");
  log.info(config, "spread");
  log.info(
    { nested: { deeper: { joinKey: "xjk_proj_RAWSTRING" } }, token: "RAWTOKEN" },
    "raw strings under secret keys",
  );
  log.info({ headers: { authorization: "Bearer RAWBEARER" } }, "headers");
  const all = lines.join("\n");
  for (const secret of ["JOINSECRET", "SALTSECRET", "REDISPASS", "RAWSTRING", "RAWTOKEN", "RAWBEARER"]) {
    assert.ok(!all.includes(secret), `${secret} leaked into: ${all}`);
  }
  assert.match(all, /\[redacted\]/);
});

test("pretty output redacts too", () => {
  const { stream, lines } = recorder();
  const log = createLogger({ level: "info", destination: stream, pretty: true });
  log.info({ joinKey: new Secret("xjk_p_PRETTYSECRET") }, "enrolling");
  assert.ok(lines.length > 0);
  assert.ok(!lines.join("\n").includes("PRETTYSECRET"));
});

test("URL credentials are stripped from text", () => {
  assert.equal(
    redactUrlCredentials("connect redis://u:pw@h:6379/0 failed"),
    "connect redis://[redacted]@h:6379/0 failed",
  );
  assert.equal(redactUrlCredentials("redis://:only-password@h:6379"), "redis://[redacted]@h:6379");
  assert.equal(redactUrlCredentials("https://h/x?a=b@c"), "https://h/x?a=b@c");
});
