import assert from "node:assert/strict";
import { mkdirSync, readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { after, describe, test } from "node:test";
import { cleanup, doctor, tempDir } from "./helpers.ts";

after(cleanup);

/** A fake /proc with the two sysctls and this process's CapEff. */
function procRoot(wmem: number, rmem: number, capEff: string): string {
  const root = tempDir("xim-proc-");
  mkdirSync(join(root, "sys/net/core"), { recursive: true });
  mkdirSync(join(root, "self"), { recursive: true });
  writeFileSync(join(root, "sys/net/core/wmem_max"), `${wmem}\n`);
  writeFileSync(join(root, "sys/net/core/rmem_max"), `${rmem}\n`);
  writeFileSync(join(root, "self/status"), `Name:\tnode\nCapInh:\t0000000000000000\nCapEff:\t${capEff}\n`);
  return root;
}

describe("socket-buffers: net.core.wmem_max/rmem_max against 4 MiB", () => {
  test("Linux's default 212992 without CAP_SYS_ADMIN warns with the sysctl and sysctl.d fix", async () => {
    const r = await doctor(
      {},
      {
        selectors: ["socket-buffers"],
        procRoot: procRoot(212992, 212992, "0000000000000000"),
        inContainer: true,
      },
    );
    const c = r["socket-buffers"];
    assert.equal(c.status, "warn");
    assert.match(c.evidence, /net\.core\.wmem_max=212992, net\.core\.rmem_max=212992/);
    assert.match(c.evidence, /`xim run` cannot raise them itself \(no CAP_NET_ADMIN or CAP_SYS_ADMIN/);
    assert.match(c.fix ?? "", /run its container privileged/);
    assert.match(c.fix ?? "", /^On the host/);
    assert.match(
      c.fix ?? "",
      /sudo sysctl -w net\.core\.wmem_max=4194304 && sudo sysctl -w net\.core\.rmem_max=4194304/,
    );
    assert.match(
      c.fix ?? "",
      /\/etc\/sysctl\.d\/99-xerotier\.conf: "net\.core\.wmem_max = 4194304" and "net\.core\.rmem_max = 4194304"/,
    );
  });

  test("with CAP_SYS_ADMIN (bit 21 of CapEff) and a writable /proc/sys, xim run raises them itself", async () => {
    const r = await doctor(
      {},
      {
        selectors: ["socket-buffers"],
        procRoot: procRoot(212992, 8388608, "000001fffeffffff"),
        inContainer: false,
      },
    );
    assert.equal(r["socket-buffers"].status, "warn");
    assert.match(r["socket-buffers"].evidence, /wmem_max=212992/);
    assert.match(
      r["socket-buffers"].evidence,
      /holds CAP_SYS_ADMIN and CAP_NET_ADMIN and \/proc\/sys is writable, so `xim run` raises them itself at start/,
    );
  });

  test("CAP_NET_ADMIN is bit 12 and CAP_SYS_ADMIN bit 21 exactly: either counts, every other bit does not", async () => {
    const hex = (n: bigint) => n.toString(16).padStart(16, "0");
    const evidence = async (capEff: string) =>
      (
        await doctor(
          {},
          { selectors: ["socket-buffers"], procRoot: procRoot(212992, 212992, capEff), inContainer: false },
        )
      )["socket-buffers"].evidence;
    const others = 0x1ffffffffffn & ~(1n << 21n) & ~(1n << 12n);
    assert.match(await evidence(hex(others)), /no CAP_NET_ADMIN or CAP_SYS_ADMIN/);
    assert.match(await evidence(hex(1n << 12n)), /holds CAP_NET_ADMIN and \/proc\/sys is writable/);
    assert.match(await evidence(hex(1n << 21n)), /holds CAP_SYS_ADMIN and \/proc\/sys is writable/);
  });

  test("limits of 4 MiB or more are ok", async () => {
    const r = await doctor({}, { selectors: ["socket-buffers"], procRoot: procRoot(4194304, 16777216, "0") });
    assert.equal(r["socket-buffers"].status, "ok");
  });

  test("no /proc/sys at all is skipped with the reason", async () => {
    const r = await doctor({}, { selectors: ["socket-buffers"], procRoot: tempDir() });
    assert.equal(r["socket-buffers"].status, "skipped");
  });

  test("on this machine the real values are reported", async () => {
    const r = await doctor({}, { selectors: ["socket-buffers"] });
    const w = readFileSync("/proc/sys/net/core/wmem_max", "utf8").trim();
    assert.match(r["socket-buffers"].evidence, new RegExp(`net\\.core\\.wmem_max=${w}`));
  });
});

describe("disk-space: free space under the model cache", () => {
  test("a cache limit larger than the free space warns with a size that fits", async () => {
    const home = tempDir();
    const r = await doctor(
      { HOME: home, XEROTIER_AGENT_MODEL_CACHE_MAX_SIZE_GB: "100000000" },
      { selectors: ["disk-space"] },
    );
    assert.equal(r["disk-space"].status, "warn");
    assert.match(r["disk-space"].fix ?? "", /XEROTIER_AGENT_MODEL_CACHE_MAX_SIZE_GB=\d+/);
  });

  test("a cache limit that fits is ok and counts what the cache holds", async () => {
    const home = tempDir();
    const cache = join(home, "cache");
    mkdirSync(join(cache, "m"), { recursive: true });
    writeFileSync(join(cache, "m", "w.safetensors"), Buffer.alloc(1_000_000));
    const r = await doctor(
      { HOME: home, XEROTIER_AGENT_MODEL_CACHE_DIR: cache, XEROTIER_AGENT_MODEL_CACHE_MAX_SIZE_GB: "1" },
      { selectors: ["disk-space"] },
    );
    assert.equal(r["disk-space"].status, "ok");
    assert.match(r["disk-space"].evidence, /the cache holds 0\.0 GB of its 1 GB limit/);
  });
});
