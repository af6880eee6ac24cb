import assert from "node:assert/strict";
import { join } from "node:path";
import { after, before, test } from "node:test";
import { runNode } from "../../src/agent/session.ts";
import { loadConfig } from "../../src/core/config/load.ts";
import type { XimError } from "../../src/core/errors.ts";
import { silentLogger } from "../../src/core/log.ts";
import { createJoinKey } from "../../src/router/join-keys.ts";
import { chatBody, post, Stack } from "../helpers/stack.ts";

// A router started with --insecure-zmq runs ZeroMQ without CURVE (development and
// benchmarks). Nodes learn it at enrollment and connect only when allowed to.
let stack: Stack;
before(async () => {
  stack = await Stack.start({ plainZmq: true });
});
after(async () => {
  await stack.close();
});

test("a node refuses a plain-ZeroMQ router unless XEROTIER_AGENT_ALLOW_INSECURE=1 (exit 78, with the fix)", {
  timeout: 30_000,
}, async () => {
  const { key } = createJoinKey(stack.service.store, stack.service.identity, {
    project: "default",
    uses: 1,
    ttlMs: null,
    labels: {},
  });
  const { config } = loadConfig({
    env: {
      XEROTIER_AGENT_CONFIG_DIR: join(stack.dir, "refusing-node"),
      XEROTIER_AGENT_JOIN_KEY: key,
      XEROTIER_AGENT_DISABLE_METRICS_SERVER: "1",
    },
    cwd: stack.dir,
  });
  await assert.rejects(
    runNode({ config, logger: silentLogger(), signal: AbortSignal.timeout(20_000) }),
    (err) => {
      const e = err as XimError;
      assert.equal(e.code, "XIM_INSECURE_ROUTER");
      assert.equal(e.exitCode, 78);
      assert.match(e.hint ?? "", /XEROTIER_AGENT_ALLOW_INSECURE=1/);
      return true;
    },
  );
});

test("with insecure allowed, a stream goes through a router without CURVE", { timeout: 30_000 }, async () => {
  await stack.addNode({ env: { XEROTIER_AGENT_ALLOW_INSECURE: "1" } });
  const r = await post(stack.url, "/v1/chat/completions", chatBody({ stream: true }), {
    authorization: `Bearer ${stack.apiKey("default", "t")}`,
  });
  assert.equal(r.status, 200);
  assert.match(r.body.toString(), /data: \[DONE\]\n\n$/);
});
