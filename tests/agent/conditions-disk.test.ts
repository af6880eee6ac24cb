/**
 * A model cache on a nearly full small file system raises
 * `model_cache_disk_low` through the doctor's disk-space check, watched by
 * the node's monitor. The file system is a real 2 MiB tmpfs; mounting needs
 * root (CAP_SYS_ADMIN), so the test skips, saying why, where it is refused.
 */
import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import { mkdirSync, mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, test } from "node:test";
import { ConditionMonitor, watchedChecks } from "../../src/agent/conditions/monitor.ts";
import { loadConfig } from "../../src/core/config/load.ts";
import { silentLogger } from "../../src/core/log.ts";

const dir = mkdtempSync(join(tmpdir(), "xim-cache-disk-"));
const mountPoint = join(dir, "small");
mkdirSync(mountPoint);

/** Why a tmpfs cannot be mounted here, or undefined once it is. */
function mountSmallTmpfs(): string | undefined {
  if (process.getuid?.() !== 0) return "mounting a tmpfs needs root";
  try {
    execFileSync("mount", ["-t", "tmpfs", "-o", "size=2m", "tmpfs", mountPoint], { stdio: "pipe" });
    return undefined;
  } catch (err) {
    return `mount -t tmpfs was refused (${String((err as Error).message).split("\n")[0]})`;
  }
}

const refused = mountSmallTmpfs();

after(() => {
  if (!refused) execFileSync("umount", [mountPoint], { stdio: "pipe" });
  rmSync(dir, { recursive: true, force: true });
});

test("a model cache on a 2 MiB file system raises model_cache_disk_low (degraded) with the fix", {
  skip: refused,
  timeout: 30_000,
}, async () => {
  const { config } = loadConfig({
    env: { XEROTIER_AGENT_MODEL_CACHE_DIR: join(mountPoint, "models") },
    cwd: dir,
  });
  const monitor = new ConditionMonitor({
    doctor: { config, env: {} },
    logger: silentLogger(),
    checks: watchedChecks().filter((c) => c.id === "disk-space"),
  });
  try {
    const [low] = await monitor.start();
    assert.equal(low?.condition, "model_cache_disk_low");
    assert.equal(low.severity, "degraded");
    assert.match(low.message, new RegExp(`free on the file system of ${mountPoint}`));
    assert.match(low.fix, /XEROTIER_AGENT_MODEL_CACHE_DIR/);
  } finally {
    await monitor.stop();
  }
});
