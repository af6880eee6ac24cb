/**
 * A node enrolled straight into a router's store: a join key minted for it
 * and spent on it, as `xim router join-key create` and `xim enroll` would do,
 * without HTTPS. For tests that speak the wire protocol as a node.
 */
import { randomBytes } from "node:crypto";
import { joinKeyId, joinKeySecretHash } from "../../src/protocol/join-key.ts";
import type { RouterStore } from "../../src/router/store.ts";
import { type CurveKeyPair, generateCurveKeyPair } from "../../src/transport/curve.ts";

export interface DirectNode {
  nodeId: string;
  keys: CurveKeyPair;
}

export function enrollDirect(
  store: RouterStore,
  project = "default",
  keys = generateCurveKeyPair(),
): DirectNode {
  const hash = joinKeySecretHash(randomBytes(16));
  store.insertJoinKey({
    id: joinKeyId(hash),
    hash,
    project,
    usesAllowed: 1,
    uses: 0,
    expiresAt: null,
    labels: {},
    createdAt: Date.now(),
    revokedAt: null,
  });
  const nodeId = `node_${randomBytes(12).toString("hex")}`;
  const r = store.enrollNode({
    hash,
    project,
    nodeId,
    publicKey: keys.publicKey,
    hostname: "test",
    agentVersion: "test",
    now: Date.now(),
  });
  if (!r.ok) throw new Error(`enrolling a test node failed: ${JSON.stringify(r)}`);
  return { nodeId, keys };
}
