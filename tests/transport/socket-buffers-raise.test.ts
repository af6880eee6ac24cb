/**
 * `xim run` raises low kernel socket buffer limits at start and logs the
 * outcome once: raised, or not permitted with the sysctl and container fix.
 * Real `xim run` processes against a fake /proc tree (XIM_PROC_ROOT): the
 * real /proc/sys is never written. The node is not enrolled, so it stops
 * right after the attempt (exit code 1), which is all these tests need. The
 * "not permitted" case runs the node as an unprivileged user (nobody) when
 * the tests run as root, since root may write any file of the fake tree.
 */
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { chmodSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, describe, test } from "node:test";
import { raiseSocketBuffers, SOCKET_BUFFER_BYTES } from "../../src/transport/socket-buffers.ts";
import { baseEnv, MAIN, REPO } from "../router/harness.ts";

const dir = mkdtempSync(join(tmpdir(), "xim-sysctl-raise-"));
// The unprivileged node must reach the fake tree and its home.
chmodSync(dir, 0o755);
after(() => rmSync(dir, { recursive: true, force: true }));

let n = 0;
function procTree(wmem: number, rmem: number): { root: string; wmem: string; rmem: string } {
  const root = join(dir, `proc-${++n}`);
  const core = join(root, "sys", "net", "core");
  mkdirSync(core, { recursive: true, mode: 0o755 });
  writeFileSync(join(core, "wmem_max"), `${wmem}\n`);
  writeFileSync(join(core, "rmem_max"), `${rmem}\n`);
  return { root, wmem: join(core, "wmem_max"), rmem: join(core, "rmem_max") };
}

/** Run `xim run` to its exit (generous bound: two shared cores); its whole output. */
function xim(
  env: Record<string, string | undefined>,
  uid?: number,
): Promise<{ code: number | null; out: string }> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [MAIN, "run"], {
      env,
      cwd: REPO,
      stdio: ["ignore", "pipe", "pipe"],
      ...(uid === undefined ? {} : { uid, gid: uid }),
    });
    let out = "";
    child.stdout.on("data", (d: Buffer) => {
      out += d.toString();
    });
    child.stderr.on("data", (d: Buffer) => {
      out += d.toString();
    });
    const timer = setTimeout(() => child.kill("SIGKILL"), 60_000);
    child.on("error", reject);
    child.on("exit", (code) => {
      clearTimeout(timer);
      resolve({ code, out });
    });
  });
}

function nodeEnv(procRoot: string) {
  const home = join(dir, `home-${++n}`);
  mkdirSync(home, { recursive: true, mode: 0o777 });
  chmodSync(home, 0o777);
  return baseEnv(home, { XIM_PROC_ROOT: procRoot, XEROTIER_AGENT_CONFIG_DIR: join(home, "config") });
}

describe("xim run raises the kernel's socket buffer limits", { timeout: 120_000 }, () => {
  test("low limits it may write are raised to 4 MiB and logged once", async () => {
    const tree = procTree(212992, 212992);
    const r = await xim(nodeEnv(tree.root));
    assert.notEqual(r.code, 0, r.out);
    assert.equal(readFileSync(tree.wmem, "utf8").trim(), String(SOCKET_BUFFER_BYTES));
    assert.equal(readFileSync(tree.rmem, "utf8").trim(), String(SOCKET_BUFFER_BYTES));
    const lines = r.out.split("\n").filter((l) => l.includes("socket buffer"));
    assert.equal(lines.length, 1, r.out);
    assert.match(
      lines[0],
      /raised the kernel socket buffer limits \(net\.core\.wmem_max 212992 -> 4194304, net\.core\.rmem_max 212992 -> 4194304\)/,
    );
  });

  test("limits it may not write: nothing changes, one warning with the sysctl and the container fix", async () => {
    const tree = procTree(212992, 8388608);
    chmodSync(tree.wmem, 0o444);
    chmodSync(tree.rmem, 0o444);
    const asRoot = process.getuid?.() === 0;
    const r = await xim(nodeEnv(tree.root), asRoot ? 65534 : undefined);
    assert.notEqual(r.code, 0, r.out);
    assert.equal(readFileSync(tree.wmem, "utf8").trim(), "212992");
    const lines = r.out.split("\n").filter((l) => l.includes("socket buffer"));
    assert.equal(lines.length, 1, r.out);
    assert.match(lines[0], /net\.core\.wmem_max=212992/);
    assert.doesNotMatch(lines[0], /rmem_max=8388608/, "only the low limit is named");
    assert.match(lines[0], /could not raise them itself \(net\.core\.wmem_max: EACCES/);
    assert.match(lines[0], /sudo sysctl -w net\.core\.wmem_max=4194304/);
    assert.match(lines[0], /99-xerotier\.conf/);
    assert.match(lines[0], /privileged: true/);
  });

  test("limits already at 4 MiB, or unreadable: nothing written, nothing logged", async () => {
    const fine = procTree(SOCKET_BUFFER_BYTES, 16 * 1024 * 1024);
    assert.equal((await raiseSocketBuffers(fine.root)).kind, "ok");
    assert.equal(readFileSync(fine.rmem, "utf8").trim(), String(16 * 1024 * 1024));
    const r = await xim(nodeEnv(join(dir, "no-proc")));
    assert.notEqual(r.code, 0, r.out);
    assert.doesNotMatch(r.out, /socket buffer/);
  });
});
