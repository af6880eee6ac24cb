/**
 * `kv_cache_exhausted` from the engine's /metrics: raised while the KV
 * cache is near full and preemptions rise, cleared at the next look that
 * sees no new preemption. The engine's metrics come from a real loopback
 * HTTP server whose text the test sets (vLLM's names and labels), and from
 * the simulated engine, which exports the same names.
 */
import assert from "node:assert/strict";
import http from "node:http";
import type { AddressInfo } from "node:net";
import { after, before, describe, test } from "node:test";
import { KvCacheWatch, parseKvCacheMetrics } from "../../src/agent/conditions/kv-cache.ts";
import { silentLogger } from "../../src/core/log.ts";
import type { ConditionFinding } from "../../src/doctor/check.ts";
import { SimulatedEngine } from "../../src/engine/simulated-engine.ts";

let metricsText = "";
let server: http.Server;
let url = "";

before(async () => {
  server = http.createServer((_req, res) =>
    res.writeHead(200, { "content-type": "text/plain" }).end(metricsText),
  );
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  url = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
});

after(() => new Promise<void>((resolve) => server.close(() => resolve())));

/** vLLM's exposition of the two metrics (labels as vLLM 0.11 writes them). */
const vllm = (usage: number, preemptions: number) =>
  [
    "# HELP vllm:kv_cache_usage_perc KV-cache usage. 1 means 100 percent usage.",
    "# TYPE vllm:kv_cache_usage_perc gauge",
    `vllm:kv_cache_usage_perc{engine="0",model_name="qwen"} ${usage}`,
    "# TYPE vllm:num_preemptions_total counter",
    `vllm:num_preemptions_total{engine="0",model_name="qwen"} ${preemptions}`,
  ].join("\n");

describe("kv_cache_exhausted", { timeout: 30_000 }, () => {
  test("a full cache with rising preemptions raises it (degraded); no new preemption clears it", async () => {
    const seen: Array<ConditionFinding | undefined> = [];
    const watch = new KvCacheWatch({
      engineUrl: () => url,
      set: (f) => seen.push(f),
      logger: silentLogger(),
    });
    metricsText = vllm(0.99, 10);
    await watch.sample();
    assert.equal(seen.at(-1), undefined, "the first look has nothing to compare with");
    metricsText = vllm(0.995, 14);
    await watch.sample();
    assert.equal(seen.at(-1)?.condition, "kv_cache_exhausted");
    assert.equal(seen.at(-1)?.severity, "degraded");
    assert.match(seen.at(-1)?.message ?? "", /99\.5% used and it preempted 4 running request/);
    metricsText = vllm(0.99, 14);
    await watch.sample();
    assert.equal(seen.at(-1), undefined);
    metricsText = vllm(0.5, 20);
    await watch.sample();
    assert.equal(seen.at(-1), undefined, "preemptions with room in the cache are not exhaustion");
  });

  test("the deprecated vllm:gpu_cache_usage_perc is read too; an engine not ready is not asked", async () => {
    assert.deepEqual(parseKvCacheMetrics('vllm:gpu_cache_usage_perc{engine="0"} 0.42\n'), {
      usage: 0.42,
      preemptions: undefined,
    });
    const seen: Array<ConditionFinding | undefined> = [];
    const watch = new KvCacheWatch({
      engineUrl: () => undefined,
      set: (f) => seen.push(f),
      logger: silentLogger(),
    });
    await watch.sample();
    assert.deepEqual(seen, [undefined]);
  });

  test("the simulated engine exports both names, and an idle one raises nothing", async () => {
    const engine = new SimulatedEngine({ model: "sim", loadTimeMs: 0, maxNumSeqs: 4 });
    await engine.start();
    try {
      const text = await (await fetch(`${engine.baseUrl}/metrics`)).text();
      assert.deepEqual(parseKvCacheMetrics(text), { usage: 0, preemptions: 0 });
    } finally {
      await engine.stop(1000);
    }
  });
});
