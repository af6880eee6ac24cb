/**
 * The node's model-assignment handler on its own: a published model
 * (ModelLibrary, the router's real request handler) answers its requests
 * in this process, and a fake clock shows that byte counts reach the
 * router at most once per interval while every change of state goes at once.
 */
import assert from "node:assert/strict";
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, describe, test } from "node:test";
import { ModelAssignments, type ModelProgressReport } from "../../src/agent/model-assignment.ts";
import { silentLogger } from "../../src/core/log.ts";
import { ModelLibrary } from "../../src/models/library.ts";
import type { ModelChannel } from "../../src/protocol/model-transfer.ts";

const root = mkdtempSync(join(tmpdir(), "xim-assign-progress-"));
after(() => rmSync(root, { recursive: true, force: true }));

const FILES = 40;

async function published(name: string): Promise<{ library: ModelLibrary; folder: string }> {
  const folder = join(root, "src", name);
  mkdirSync(folder, { recursive: true });
  for (let i = 0; i < FILES; i++)
    writeFileSync(join(folder, `part-${String(i).padStart(2, "0")}.bin`), Buffer.alloc(50_000, i));
  const library = new ModelLibrary(join(root, "state", name));
  await library.add(name, folder);
  return { library, folder };
}

/** A handler pulling into its own cache folder, recording its reports and what it was asked to serve. */
function assignments(
  cache: string,
  channel: ModelChannel,
  o: { serve?: () => Promise<void>; now?: () => number; reportIntervalMs?: number } = {},
) {
  const reports: ModelProgressReport[] = [];
  const served: Array<{ name: string; path: string }> = [];
  const handler = new ModelAssignments({
    config: {
      modelCacheDir: join(root, cache),
      modelCacheMaxSizeGb: 1,
      modelPullMaxAttempts: 2,
      modelPullBaseDelayMs: 1,
      modelPullMaxDelayMs: 1,
    },
    logger: silentLogger(),
    channel,
    report: async (p) => {
      reports.push({ ...p });
      return true;
    },
    serve:
      o.serve ??
      (async (m) => {
        served.push(m);
      }),
    now: o.now,
    reportIntervalMs: o.reportIntervalMs,
  });
  return { a: handler, reports, served };
}

describe("model assignment progress", () => {
  test("byte counts are reported at most once per interval; state changes always", {
    timeout: 30_000,
  }, async () => {
    const { library, folder } = await published("many");
    let t = 0;
    // Each request to the router takes 250 ms on the fake clock.
    const channel: ModelChannel = async (request) => {
      t += 250;
      return library.handle(request);
    };
    const { a, reports, served } = assignments("cache", channel, { now: () => t, reportIntervalMs: 1000 });
    a.handle({ assignmentId: "as_1", name: "many" });
    await a.settled;
    assert.equal(served.length, 1);
    assert.equal(reports.at(-1)?.state, "ready");
    assert.equal(reports.at(-1)?.bytesDone, FILES * 50_000);
    const pulling = reports.filter((r) => r.state === "pulling");
    // ~41 requests x 250 ms = ~10 s: about ten timed reports, plus the forced ones at manifest and start.
    assert.ok(pulling.length <= 10 / 1 + 4, `${pulling.length} pulling reports for ${t} ms`);
    assert.ok(pulling.length >= 3, "progress was reported while pulling");
    for (let i = 1; i < pulling.length; i++) {
      assert.ok(pulling[i].bytesDone >= pulling[i - 1].bytesDone, "byte counts only grow");
    }
    assert.deepEqual(
      readFileSync(join(root, "cache", "many", "part-39.bin")),
      readFileSync(join(folder, "part-39.bin")),
    );

    // The same assignment again (a reconnect): no new pull, the last report is sent again.
    const before = reports.length;
    a.handle({ assignmentId: "as_1", name: "many" });
    await a.settled;
    assert.equal(served.length, 1);
    assert.equal(reports.length, before + 1);
    assert.equal(reports.at(-1)?.state, "ready");
    await a.close();
  });

  test("an engine that cannot take the model reports failed with its reason", {
    timeout: 30_000,
  }, async () => {
    const { library } = await published("refused");
    const { a, reports } = assignments("cache2", (request) => library.handle(request), {
      serve: async () => {
        throw new Error("the planner found no config.json");
      },
    });
    a.handle({ assignmentId: "as_2", name: "refused" });
    await a.settled;
    assert.equal(reports.at(-1)?.state, "failed");
    assert.match(reports.at(-1)?.message ?? "", /no config\.json/);
    await a.close();
  });

  test("a withdrawn assignment stops its pull mid-way: nothing is served, no failure is reported", {
    timeout: 30_000,
  }, async () => {
    const { library } = await published("withdrawn");
    let requests = 0;
    let release: () => void = () => {};
    const held = new Promise<void>((resolve) => {
      release = resolve;
    });
    let reachedFifth: () => void = () => {};
    const fifth = new Promise<void>((resolve) => {
      reachedFifth = resolve;
    });
    // From the fifth on, requests to the router wait until the test has withdrawn the assignment;
    // like the session's channel, a request whose signal aborts is rejected.
    const channel: ModelChannel = async (request, signal) => {
      if (++requests >= 5) {
        reachedFifth();
        await new Promise<void>((resolve, reject) => {
          void held.then(resolve);
          signal?.addEventListener("abort", () => reject(new Error("the model request was cancelled")), {
            once: true,
          });
        });
      }
      return library.handle(request);
    };
    const { a, reports, served } = assignments("cache3", channel);
    a.handle({ assignmentId: "as_3", name: "withdrawn" });
    await fifth;
    a.withdraw("as_other");
    a.withdraw("as_3");
    const issued = requests;
    release();
    await a.settled;
    assert.deepEqual(served, [], "the withdrawn model was not served");
    assert.equal(requests, issued, "no request to the router after the withdrawal");
    assert.ok(!existsSync(join(root, "cache3", "withdrawn")), "nothing was placed in the cache");
    assert.ok(
      reports.every((r) => r.state === "pulling"),
      reports.map((r) => r.state).join(","),
    );

    // Assigned again later, it is pulled (resuming what is on disk) and served.
    a.handle({ assignmentId: "as_4", name: "withdrawn" });
    await a.settled;
    assert.equal(served.length, 1);
    assert.equal(reports.at(-1)?.state, "ready");
    await a.close();
  });
});
