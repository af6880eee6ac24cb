/**
 * A reference router in this process (loopback, OS ports) with one node
 * enrolled into a temporary config folder, and copies of that node's state
 * with fields changed: the setup of the tests that ask what a node sees of
 * its router (doctor's reachability checks, `xim run`'s diagnosis).
 */
import assert from "node:assert/strict";
import { join } from "node:path";
import { silentLogger } from "../../src/core/log.ts";
import { enroll } from "../../src/enrollment/enroll.ts";
import { type EnrollmentFile, loadEnrollmentState, saveEnrollmentState } from "../../src/enrollment/state.ts";
import { createJoinKey } from "../../src/router/join-keys.ts";
import { type RouterService, startRouterService } from "../../src/router/service.ts";
import { generateCurveKeyPair } from "../../src/transport/curve.ts";

export interface EnrolledNode {
  router: RouterService;
  /** The config folder of the enrolled node. */
  enrolledDir: string;
  /** A new config folder holding the enrolled state with `change` applied (and another key pair with `newKeys`). */
  variant(change: Partial<EnrollmentFile>, newKeys?: boolean): Promise<string>;
}

export async function startEnrolledNode(
  project: string,
  tempDir: (prefix?: string) => string,
): Promise<EnrolledNode> {
  const router = await startRouterService({
    stateDir: tempDir("xim-router-"),
    enrollListen: { host: "127.0.0.1", port: 0 },
    controlBind: "tcp://127.0.0.1:0",
    streamingBind: "tcp://127.0.0.1:0",
    logger: silentLogger(),
  });
  const key = createJoinKey(router.store, router.identity, { project, uses: 1, ttlMs: null, labels: {} });
  const enrolledDir = join(tempDir(), "xerotier");
  await enroll({ joinKey: key.key, allowInsecure: false, configDir: enrolledDir, logger: silentLogger() });
  return {
    router,
    enrolledDir,
    async variant(change, newKeys = false) {
      const state = await loadEnrollmentState(enrolledDir);
      assert.ok(state);
      const { keys, configDir: _dir, ...file } = state;
      const pair = newKeys ? generateCurveKeyPair() : keys;
      const dir = join(tempDir(), "xerotier");
      await saveEnrollmentState(dir, { ...file, ...change, nodePublicKey: pair.publicKey }, pair);
      return dir;
    },
  };
}
