import assert from "node:assert/strict";
import { existsSync, mkdtempSync, rmSync, utimesSync, writeFileSync } from "node:fs";
import { hostname, tmpdir } from "node:os";
import { join } from "node:path";
import { after, test } from "node:test";
import { acquireLock } from "../../src/models/lock.ts";

const root = mkdtempSync(join(tmpdir(), "xim-lock-"));
after(() => rmSync(root, { recursive: true, force: true }));

test("a lock left by a process that is gone is taken over", async () => {
  const path = join(root, "dead.lock");
  writeFileSync(
    path,
    JSON.stringify({ pid: 999_999, host: hostname(), since: "2026-01-01T00:00:00Z", what: "m" }),
  );
  const lock = await acquireLock(path, { what: "m", wait: false });
  await lock.release();
  assert.ok(!existsSync(path));
});

test("a half-written lock file is taken over once it is a minute old, not before", async () => {
  const path = join(root, "empty.lock");
  writeFileSync(path, "");
  await assert.rejects(acquireLock(path, { what: "m", wait: false }), /being pulled by another process/);
  const old = new Date(Date.now() - 120_000);
  utimesSync(path, old, old);
  const lock = await acquireLock(path, { what: "m", wait: false });
  await lock.release();
});

test("a lock held by a live process on another host is respected", async () => {
  const path = join(root, "remote.lock");
  writeFileSync(
    path,
    JSON.stringify({ pid: 1, host: "other-host", since: "2026-01-01T00:00:00Z", what: "m" }),
  );
  await assert.rejects(acquireLock(path, { what: "m", wait: false }), /process 1 on other-host/);
});
