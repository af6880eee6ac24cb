/**
 * The whole router service in-process (HTTPS enrollment, CURVE control
 * plane, published models) with a real node session: a model the router
 * publishes reaches the node over the node's own connection.
 */
import assert from "node:assert/strict";
import { createHash } from "node:crypto";
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, test } from "node:test";
import { NodeSession } from "../../src/agent/session.ts";
import { silentLogger } from "../../src/core/log.ts";
import { enroll } from "../../src/enrollment/enroll.ts";
import { loadEnrollmentState } from "../../src/enrollment/state.ts";
import { ModelLibrary } from "../../src/models/library.ts";
import { RouterSource } from "../../src/models/sources/router.ts";
import { createJoinKey } from "../../src/router/join-keys.ts";
import { assignModel } from "../../src/router/model-assignments.ts";
import { startRouterService } from "../../src/router/service.ts";
import { waitFor } from "./harness.ts";

const dir = mkdtempSync(join(tmpdir(), "xim-service-"));
after(() => rmSync(dir, { recursive: true, force: true }));

test("a published model reaches an enrolled node over its control and streaming sockets", {
  timeout: 30_000,
}, async () => {
  const logger = silentLogger();
  const stateDir = join(dir, "router");
  const service = await startRouterService({
    stateDir,
    enrollListen: { host: "127.0.0.1", port: 0 },
    controlBind: "tcp://127.0.0.1:0",
    streamingBind: "tcp://127.0.0.1:0",
    logger,
  });
  let session: NodeSession | undefined;
  try {
    const modelDir = join(dir, "tiny-model");
    mkdirSync(modelDir);
    const weights = Buffer.alloc(300_000, 7);
    writeFileSync(join(modelDir, "config.json"), '{"architectures":["Tiny"]}');
    writeFileSync(join(modelDir, "model.safetensors"), weights);
    const library = new ModelLibrary(stateDir);
    await library.add("tiny", modelDir);

    const configDir = join(dir, "node");
    const key = createJoinKey(service.store, service.identity, {
      project: "p",
      uses: 1,
      ttlMs: 60_000,
      labels: {},
    }).key;
    await enroll({ joinKey: key, allowInsecure: false, configDir, logger });
    const state = await loadEnrollmentState(configDir);
    assert.ok(state);
    // The router serves a node only the model assigned to it.
    await assignModel(service.store, library, state.nodeId, "tiny");
    const s = new NodeSession({
      state,
      settings: {
        leaseRenewalIntervalMs: 200,
        leaseDurationMs: 2000,
        streamingSocketEnabled: true,
        maxConcurrent: 1,
      },
      logger,
    });
    session = s;
    void s.start();
    await waitFor(() => s.lease, { timeoutMs: 10_000, what: "registration" });

    const source = new RouterSource("tiny", s.modelChannel(5000), { chunkBytes: 64 * 1024 });
    const manifest = await source.manifest();
    const file = manifest.files.find((f) => f.path === "model.safetensors");
    assert.ok(file);
    assert.equal(file.size, weights.length);
    const fetched = await source.fetchFile(file, 0);
    const hash = createHash("sha256");
    let bytes = 0;
    for await (const chunk of fetched.body) {
      hash.update(chunk);
      bytes += chunk.byteLength;
    }
    assert.equal(bytes, weights.length);
    assert.equal(hash.digest("hex"), file.sha256);
    await assert.rejects(new RouterSource("missing", s.modelChannel(5000)).manifest(), /router:/);
  } finally {
    await session?.stop();
    await service.close();
  }
});
