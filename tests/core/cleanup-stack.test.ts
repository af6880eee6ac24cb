import assert from "node:assert/strict";
import { test } from "node:test";
import { CleanupStack } from "../../src/core/cleanup-stack.ts";

test("cleanup steps run newest first, each once", async () => {
  const ran: string[] = [];
  const cleanup = new CleanupStack();
  cleanup.defer(() => {
    ran.push("store");
  });
  cleanup.defer(async () => {
    ran.push("sockets");
  });
  cleanup.defer(() => {
    ran.push("server");
  });
  await cleanup.close();
  await cleanup.close();
  assert.deepEqual(ran, ["server", "sockets", "store"]);
});

test("a failing cleanup step does not stop the older ones, and its error is thrown after them", async () => {
  const ran: string[] = [];
  const cleanup = new CleanupStack();
  cleanup.defer(() => {
    ran.push("store");
  });
  cleanup.defer(() => {
    throw new Error("first failure");
  });
  cleanup.defer(async () => {
    throw new Error("newest failure");
  });
  await assert.rejects(cleanup.close(), /newest failure/);
  assert.deepEqual(ran, ["store"]);
});
