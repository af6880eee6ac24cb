/**
 * Enrollment against an in-process router service (real HTTPS and HTTP
 * servers on loopback), and the enrollment state on disk.
 */
import assert from "node:assert/strict";
import { randomBytes } from "node:crypto";
import { mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { Writable } from "node:stream";
import { after, before, describe, test } from "node:test";
import { ExitCode, XimError } from "../../src/core/errors.ts";
import { createLogger, silentLogger } from "../../src/core/log.ts";
import { Secret } from "../../src/core/secret.ts";
import { enroll } from "../../src/enrollment/enroll.ts";
import { isEnrolled, KEY_FILE, loadEnrollmentState } from "../../src/enrollment/state.ts";
import { encodeJoinKey, parseJoinKey } from "../../src/protocol/join-key.ts";
import { createJoinKey } from "../../src/router/join-keys.ts";
import { type RouterService, startRouterService } from "../../src/router/service.ts";

const dir = mkdtempSync(join(tmpdir(), "xim-enroll-"));
let secure: RouterService;
let plain: RouterService;
const logger = silentLogger();

function start(name: string, plainHttp: boolean) {
  return startRouterService({
    stateDir: join(dir, name),
    enrollListen: { host: "127.0.0.1", port: 0 },
    controlBind: "tcp://127.0.0.1:0",
    streamingBind: "tcp://127.0.0.1:0",
    plainHttp,
    logger,
  });
}

function mint(service: RouterService, uses = 1) {
  return createJoinKey(service.store, service.identity, {
    project: "team-a",
    uses,
    ttlMs: 3_600_000,
    labels: { gpu: "none" },
  }).key;
}

function fresh(): string {
  return join(dir, `node-${randomBytes(4).toString("hex")}`);
}

async function refused(p: Promise<unknown>, exitCode: number, pattern: RegExp) {
  await assert.rejects(p, (err: unknown) => {
    assert.ok(err instanceof XimError, String(err));
    assert.equal(err.exitCode, exitCode, err.message);
    assert.match(err.message, pattern);
    return true;
  });
}

before(async () => {
  secure = await start("secure", false);
  plain = await start("plain", true);
});
after(async () => {
  await secure.close();
  await plain.close();
  rmSync(dir, { recursive: true, force: true });
});

describe("enrollment", { timeout: 30_000 }, () => {
  test("the join key alone is enough: address and pins come from it; the state is private", async () => {
    const configDir = join(fresh(), "nested", "xerotier");
    const result = await enroll({
      joinKey: new Secret(mint(secure)),
      allowInsecure: false,
      configDir,
      logger,
    });
    assert.equal(result.project, "team-a");
    assert.equal(result.router, secure.endpoints.enrollUrl);
    assert.equal(statSync(configDir).mode & 0o777, 0o700);
    assert.equal(statSync(join(configDir, "enrollment.json")).mode & 0o777, 0o600);
    assert.equal(statSync(join(configDir, KEY_FILE)).mode & 0o777, 0o600);
    const state = await loadEnrollmentState(configDir);
    assert.equal(state?.routerPublicKey, secure.identity.curve.publicKey);
    assert.deepEqual(state?.labels, { gpu: "none" });
    assert.equal(secure.store.getNode(result.nodeId)?.project, "team-a");
  });

  test("--force enrolls again with a new identity; without it nothing changes", async () => {
    const configDir = fresh();
    const first = await enroll({ joinKey: mint(secure, 2), allowInsecure: false, configDir, logger });
    await refused(
      enroll({ joinKey: mint(secure), allowInsecure: false, configDir, logger }),
      ExitCode.alreadyEnrolled,
      /already enrolled/,
    );
    const second = await enroll({
      joinKey: mint(secure),
      allowInsecure: false,
      configDir,
      logger,
      force: true,
    });
    assert.notEqual(second.nodeId, first.nodeId);
    assert.equal(second.replaced, true);
    assert.equal((await loadEnrollmentState(configDir))?.nodeId, second.nodeId);
  });

  test("revoked and unknown keys are refused with their own message", async () => {
    const key = mint(secure);
    const id = secure.store.listJoinKeys().at(-1)?.id ?? "";
    assert.ok(secure.store.revokeJoinKey(id, Date.now()));
    await refused(
      enroll({ joinKey: key, allowInsecure: false, configDir: fresh(), logger }),
      ExitCode.unknownKey,
      /revoked/,
    );
    const parts = parseJoinKey(mint(secure));
    assert.ok(parts.ok);
    const unknown = encodeJoinKey({ ...parts.key, secret: new Uint8Array(randomBytes(16)) });
    await refused(
      enroll({ joinKey: unknown, allowInsecure: false, configDir: fresh(), logger }),
      ExitCode.unknownKey,
      /does not know/,
    );
  });

  test("a key pinned to one router is refused by another (an impostor never gets the key)", async () => {
    const key = mint(secure);
    const other = await start("impostor", false);
    try {
      await refused(
        enroll({
          joinKey: key,
          routerUrl: other.endpoints.enrollUrl,
          allowInsecure: false,
          configDir: fresh(),
          logger,
        }),
        ExitCode.fingerprint,
        /TLS certificate/,
      );
      assert.equal(other.store.listNodes().length, 0);
    } finally {
      await other.close();
    }
  });

  test("plain HTTP needs --insecure, and then warns that credentials travel in clear", async () => {
    const key = mint(plain);
    await refused(
      enroll({ joinKey: key, allowInsecure: false, configDir: fresh(), logger }),
      ExitCode.insecure,
      /plain HTTP/,
    );
    const lines: string[] = [];
    const sink = new Writable({
      write(chunk, _enc, cb) {
        lines.push(String(chunk));
        cb();
      },
    });
    const result = await enroll({
      joinKey: key,
      allowInsecure: true,
      configDir: fresh(),
      logger: createLogger({ destination: sink, pretty: false }),
    });
    assert.match(result.router, /^http:/);
    assert.ok(
      lines.some((l) => /travel in clear/.test(l)),
      lines.join(""),
    );
    assert.ok(!lines.some((l) => l.includes(key)), "the key is never logged");
  });

  test("a TLS client against a plain-HTTP router gets a TLS error that says how trust works", async () => {
    const key = mint(plain);
    await refused(
      enroll({
        joinKey: key,
        routerUrl: plain.endpoints.enrollUrl.replace("http:", "https:"),
        allowInsecure: false,
        configDir: fresh(),
        logger,
      }),
      ExitCode.tls,
      /TLS with the router/,
    );
  });
});

describe("enrollment state on disk", () => {
  test("a broken or mismatched state is an error that says to re-enroll, not a crash", async () => {
    const configDir = fresh();
    await enroll({ joinKey: mint(secure), allowInsecure: false, configDir, logger });
    assert.ok(isEnrolled(configDir));
    const keyFile = join(configDir, KEY_FILE);
    const saved = readFileSync(keyFile, "utf8");
    writeFileSync(keyFile, JSON.stringify({ publicKey: "0".repeat(40), secretKey: "0".repeat(40) }));
    await assert.rejects(
      () => loadEnrollmentState(configDir),
      (err: unknown) =>
        err instanceof XimError && /another key/.test(err.message) && /--force/.test(err.hint ?? ""),
    );
    writeFileSync(keyFile, saved);
    writeFileSync(join(configDir, "enrollment.json"), "{not json");
    await assert.rejects(
      () => loadEnrollmentState(configDir),
      (err: unknown) => err instanceof XimError && err.code === "XIM_STATE_UNREADABLE",
    );
    assert.equal(await loadEnrollmentState(fresh()), null, "no state at all is simply 'not enrolled'");
  });
});
