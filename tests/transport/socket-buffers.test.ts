import assert from "node:assert/strict";
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, test } from "node:test";
import {
  readSocketBufferLimits,
  SOCKET_BUFFER_BYTES,
  socketBufferAdvice,
} from "../../src/transport/socket-buffers.ts";

const dir = mkdtempSync(join(tmpdir(), "xim-sysctl-"));
after(() => rmSync(dir, { recursive: true, force: true }));

function procRoot(name: string, wmem: string | null, rmem: string | null): string {
  const root = join(dir, name);
  mkdirSync(join(root, "sys", "net", "core"), { recursive: true });
  if (wmem !== null) writeFileSync(join(root, "sys", "net", "core", "wmem_max"), `${wmem}\n`);
  if (rmem !== null) writeFileSync(join(root, "sys", "net", "core", "rmem_max"), `${rmem}\n`);
  return root;
}

test("the kernel default of 212992 bytes is reported with the sysctl fix", () => {
  const advice = socketBufferAdvice(readSocketBufferLimits(procRoot("low", "212992", "212992")));
  assert.equal(advice.ok, false);
  assert.deepEqual(advice.limits, { wmemMax: 212992, rmemMax: 212992 });
  assert.match(advice.message, /net\.core\.wmem_max=212992/);
  assert.ok(advice.fix.commands.includes(`sudo sysctl -w net.core.rmem_max=${SOCKET_BUFFER_BYTES}`));
  assert.ok(advice.fix.persist.includes(`net.core.wmem_max = ${SOCKET_BUFFER_BYTES}`));
});

test("limits at 4 MiB or more are fine; only the low one is named", () => {
  assert.equal(socketBufferAdvice(readSocketBufferLimits(procRoot("ok", "4194304", "8388608"))).ok, true);
  const one = socketBufferAdvice(readSocketBufferLimits(procRoot("one", "4194304", "1000")));
  assert.equal(one.ok, false);
  assert.match(one.message, /\(net\.core\.rmem_max=1000\)/, "only the low limit is named as the cause");
});

test("unreadable limits (no /proc) count as unknown, not as a problem", () => {
  const advice = socketBufferAdvice(readSocketBufferLimits(procRoot("none", null, "garbage")));
  assert.deepEqual(advice.limits, { wmemMax: null, rmemMax: null });
  assert.equal(advice.ok, true);
});
