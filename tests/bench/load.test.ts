/**
 * The benchmark's buffering tripwire: the load generator reads the
 * engine's stamps (engine-sim --stamp-chunks) out of every stream, however
 * the bytes are cut into reads, and gives one lag per event. Against a
 * real simulated engine on loopback; no lag is compared with a time, only
 * counted and checked for causality (an event arrives after it was written,
 * on one monotonic clock).
 */
import assert from "node:assert/strict";
import { after, test } from "node:test";
import { readStamps, runLoad } from "../../bench/lib/load.ts";
import { SimulatedEngineServer } from "../../src/engine/simulated.ts";

const servers: SimulatedEngineServer[] = [];
after(async () => {
  for (const s of servers) await s.close();
});

async function engine(stampChunks: boolean): Promise<string> {
  const server = new SimulatedEngineServer({ model: "m", outputTokens: 40, stampChunks });
  servers.push(server);
  const address = await server.listen(0, "127.0.0.1");
  return `${address.baseUrl}/v1/chat/completions`;
}

const body = { model: "m", messages: [{ role: "user", content: "rivers" }] };

test("one lag per stamped event, none negative, across concurrent streams", { timeout: 30_000 }, async () => {
  const url = await engine(true);
  const r = await runLoad({ url, body, concurrency: 8, requests: 24, stamped: true });
  assert.equal(r.errors, 0, r.errorSamples.join(" | "));
  // Each stream: the role event and 40 tokens carry a stamp; [DONE] does not.
  assert.equal(r.chunkLagMs.length, 24 * 41);
  assert.ok(r.chunkLagMs.every((lag) => lag >= 0));
});

test("without stamps (an engine that does not stamp, or stamped off) there are no lags", {
  timeout: 30_000,
}, async () => {
  const plain = await runLoad({ url: await engine(false), body, concurrency: 2, requests: 4, stamped: true });
  assert.equal(plain.errors, 0);
  assert.equal(plain.chunkLagMs.length, 0);
  const off = await runLoad({ url: await engine(true), body, concurrency: 2, requests: 4 });
  assert.equal(off.chunkLagMs.length, 0);
});

test("a stamp cut between two reads is read once, wherever the cut falls", () => {
  const stream =
    'data: {"id":"a","xim_sent_mono_ms":100.5}\n\ndata: {"id":"b","xim_sent_mono_ms":101.25,"x":1}\n\ndata: [DONE]\n\n';
  for (let cut = 0; cut <= stream.length; cut++) {
    const lags: number[] = [];
    const tail = readStamps(stream.slice(0, cut), 200, lags);
    readStamps(tail + stream.slice(cut), 200, lags);
    assert.deepEqual(lags, [99.5, 98.75], `cut at ${cut}`);
  }
});
