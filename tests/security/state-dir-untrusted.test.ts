/**
 * Attack: another local user owns, links or can write the node's config
 * folder (or a state file in it), hoping xim writes its CURVE secret key
 * where they can read it, or later loads a key or enrollment they swapped
 * in. `xim enroll` and `xim run` run as real processes against a real
 * router (the reference router's service in this process: HTTPS enrollment
 * and the CURVE control plane on loopback); each must refuse, exit 78, name
 * the path and what is wrong, and give the exact command that fixes it,
 * before a byte is written or read. The tests run as root in CI, so
 * "another user" is uid 65534 (nobody) by chown. `xim doctor` reports the
 * same problem as a failing check.
 */
import assert from "node:assert/strict";
import {
  chmodSync,
  chownSync,
  cpSync,
  existsSync,
  mkdirSync,
  mkdtempSync,
  readdirSync,
  rmSync,
  symlinkSync,
} from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, test } from "node:test";
import { ExitCode } from "../../src/core/errors.ts";
import { silentLogger } from "../../src/core/log.ts";
import { enroll } from "../../src/enrollment/enroll.ts";
import { ENROLLMENT_FILE, KEY_FILE, loadEnrollmentState } from "../../src/enrollment/state.ts";
import { createJoinKey } from "../../src/router/join-keys.ts";
import { type RouterService, startRouterService } from "../../src/router/service.ts";
import { doctor } from "../doctor/helpers.ts";
import { baseEnv, type Finished, xim } from "../router/harness.ts";

const NOBODY = 65534;
const home = mkdtempSync(join(tmpdir(), "xim-state-dir-"));
const env = baseEnv(home, {
  XEROTIER_AGENT_DISABLE_METRICS_SERVER: "1",
  XEROTIER_AGENT_VLLM_SALT_SECRET: "test-secret-for-state-dir",
});
let router: RouterService;
/** A folder holding a good enrollment: each test copies it, then spoils the copy. */
let enrolled: string;
let counter = 0;

function mintKey(): string {
  return createJoinKey(router.store, router.identity, { project: "p", uses: 1, ttlMs: null, labels: {} }).key;
}

/** A copy of the good enrollment, private as xim makes it. */
function enrolledCopy(): string {
  const dir = join(home, `copy-${++counter}`);
  cpSync(enrolled, dir, { recursive: true, preserveTimestamps: true });
  chmodSync(dir, 0o700);
  return dir;
}

function run(configDir: string): Promise<Finished> {
  return xim(["run"], { ...env, XEROTIER_AGENT_CONFIG_DIR: configDir }, 60_000);
}

function enrollInto(configDir: string, key: string): Promise<Finished> {
  return xim(["enroll", "--join-key", key], { ...env, XEROTIER_AGENT_CONFIG_DIR: configDir }, 60_000);
}

/** Refused as unsafe: exit 78, the path and the problem named, the fix given. */
function assertRefused(r: Finished, path: string, problem: RegExp, fix: RegExp): void {
  assert.equal(r.code, ExitCode.config, `exit ${r.code}; stderr: ${r.stderr}`);
  assert.ok(r.stderr.includes(path), `the message names ${path}: ${r.stderr}`);
  assert.match(r.stderr, problem);
  assert.match(r.stderr, fix);
}

before(async () => {
  router = await startRouterService({
    stateDir: join(home, "router"),
    enrollListen: { host: "127.0.0.1", port: 0 },
    controlBind: "tcp://127.0.0.1:0",
    streamingBind: "tcp://127.0.0.1:0",
    logger: silentLogger(),
  });
  enrolled = join(home, "enrolled");
  await enroll({ joinKey: mintKey(), allowInsecure: false, configDir: enrolled, logger: silentLogger() });
});

after(async () => {
  await router?.close();
  rmSync(home, { recursive: true, force: true });
});

describe("a config folder another user controls is refused", { timeout: 300_000 }, () => {
  test("xim enroll into a folder owned by another uid writes no key there, and the join key stays unspent", async () => {
    const dir = join(home, "theirs");
    mkdirSync(dir, { mode: 0o700 });
    chownSync(dir, NOBODY, NOBODY);
    const key = mintKey();
    const r = await enrollInto(dir, key);
    assertRefused(r, dir, /owned by uid 65534/, /chown -R \d+ /);
    assert.deepEqual(readdirSync(dir), [], "nothing was written into their folder");
    const safe = join(home, "safe-after-refusal");
    const ok = await enrollInto(safe, key);
    assert.equal(ok.code, 0, `the key was not spent by the refused attempt: ${ok.stderr}`);
  });

  test("xim enroll through a symlinked config folder is refused and writes nothing behind the link", async () => {
    const target = join(home, "link-target");
    mkdirSync(target, { mode: 0o700 });
    const link = join(home, "linked-config");
    symlinkSync(target, link);
    const r = await enrollInto(link, mintKey());
    assertRefused(r, link, /symbolic link/, /rm .*linked-config && mkdir -m 700/);
    assert.deepEqual(readdirSync(target), []);
  });

  test("xim enroll into a world-writable folder is refused", async () => {
    const dir = join(home, "open");
    mkdirSync(dir);
    chmodSync(dir, 0o777);
    const r = await enrollInto(dir, mintKey());
    assertRefused(r, dir, /mode 0777: other users may write/, /chmod 700 /);
    assert.equal(existsSync(join(dir, KEY_FILE)), false);
  });

  test("xim run with an enrolled folder owned by another uid refuses to load it", async () => {
    const dir = enrolledCopy();
    chownSync(dir, NOBODY, NOBODY);
    assertRefused(await run(dir), dir, /owned by uid 65534/, /chown -R/);
  });

  test("xim run with an enrolled folder opened to others (0755) refuses until it is 0700", async () => {
    const dir = enrolledCopy();
    chmodSync(dir, 0o755);
    assertRefused(await run(dir), dir, /mode 0755: other users may read/, /chmod 700 /);
  });

  test("xim run with a world-writable enrolled folder (0777) refuses", async () => {
    const dir = enrolledCopy();
    chmodSync(dir, 0o777);
    assertRefused(await run(dir), dir, /mode 0777: other users may write/, /chmod 700 /);
  });

  test("xim run through a symlink to an enrolled folder refuses", async () => {
    const link = join(home, `link-${++counter}`);
    symlinkSync(enrolledCopy(), link);
    assertRefused(await run(link), link, /symbolic link/, /rm /);
  });

  test("a key file swapped for a symlink is not followed", async () => {
    const dir = enrolledCopy();
    const elsewhere = join(home, `planted-key-${++counter}`);
    cpSync(join(dir, KEY_FILE), elsewhere);
    rmSync(join(dir, KEY_FILE));
    symlinkSync(elsewhere, join(dir, KEY_FILE));
    assertRefused(await run(dir), join(dir, KEY_FILE), /symbolic link/, /rm .*curve\.key/);
  });

  test("an enrollment file others may read (0644) is refused with chmod 600", async () => {
    const dir = enrolledCopy();
    chmodSync(join(dir, ENROLLMENT_FILE), 0o644);
    assertRefused(await run(dir), join(dir, ENROLLMENT_FILE), /mode 0644/, /chmod 600 /);
  });

  test("a key file owned by another uid is refused", async () => {
    const dir = enrolledCopy();
    chownSync(join(dir, KEY_FILE), NOBODY, NOBODY);
    assertRefused(await run(dir), join(dir, KEY_FILE), /owned by uid 65534/, /chown/);
  });

  test("xim doctor reports an unsafe config folder as a failing enrollment check with the fix, and does not crash", async () => {
    const dir = enrolledCopy();
    chmodSync(dir, 0o777);
    const r = await doctor({ XEROTIER_AGENT_CONFIG_DIR: dir }, { selectors: ["enrollment"] });
    assert.equal(r["enrollment-state"].status, "fail");
    assert.match(r["enrollment-state"].evidence, /mode 0777/);
    assert.match(r["enrollment-state"].fix ?? "", /chmod 700/);
    await assert.rejects(loadEnrollmentState(dir), /refusing to use it/);
  });
});
