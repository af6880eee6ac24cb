import assert from "node:assert/strict";
import { test } from "node:test";
import { TotalsDelta } from "../../src/observability/totals.ts";

test("each name's growth since the last call, never negative", () => {
  const totals = new TotalsDelta();
  assert.equal(totals.delta("renewed", 3), 3);
  assert.equal(totals.delta("renewed", 3), 0);
  assert.equal(totals.delta("renewed", 7), 4);
  assert.equal(totals.delta("expired", 1), 1, "names are counted apart");
  assert.equal(totals.delta("renewed", 2), 0, "a total that went back (a new session) adds nothing");
  assert.equal(totals.delta("renewed", 5), 3);
});
