/**
 * The CI soak: 5,000 requests through a real router and two real nodes
 * while an engine is killed, the router is killed and restarted, a node is
 * stopped past its lease and another drains (tests/soak/run.ts). Every
 * request must end complete and byte-identical to the engine's output or
 * with an error the client sees; afterwards nothing may be in flight,
 * held or queued, RSS growth stays under RSS_BOUND_MIB, and no process
 * logged an unhandled error. `node tests/soak/run.ts --requests 100000`
 * runs the long version.
 */
import assert from "node:assert/strict";
import { describe, test } from "node:test";
import { formatSummary, RSS_BOUND_MIB, runSoak } from "./run.ts";

const REQUESTS = 5000;

describe("fault-injection soak", () => {
  test(`${REQUESTS} requests survive an engine kill, a router restart, a SIGSTOP past the lease and a drain`, {
    // About a minute alone on 2 cores; generous for a busy CI machine.
    timeout: 300_000,
  }, async (t) => {
    const summary = await runSoak({ requests: REQUESTS, log: (line) => t.diagnostic(line) });
    for (const line of formatSummary(summary).split("\n")) t.diagnostic(line);
    assert.deepEqual(summary.violations, [], formatSummary(summary));
    assert.equal(summary.requests, REQUESTS);
    assert.equal(summary.faults.length, 4, "every fault was injected");
    assert.ok((summary.outcomes.ok ?? 0) > REQUESTS * 0.8, "most requests completed");
    assert.ok((summary.outcomes.client_cancelled ?? 0) > 0, "clients cancelled some requests");
    for (const [name, value] of Object.entries(summary.final)) assert.equal(value, 0, name);
    for (const r of summary.rss)
      assert.ok(r.growthMiB <= RSS_BOUND_MIB, `${r.process} grew ${r.growthMiB} MiB`);
    assert.deepEqual(summary.logProblems, []);
  });
});
