/**
 * @module The wire protocol version shared by node and router, and the
 * wording of a mismatch: which side is older and must be upgraded.
 */

/** Bumped only for incompatible changes (docs/protocol.md "Versions"). */
export const PROTOCOL_VERSION = 2;

export type UpgradeSide = "node" | "router";

/** Which side to upgrade when a node of `nodeVersion` meets a router of `routerVersion`. */
export function upgradeSide(nodeVersion: number, routerVersion: number): UpgradeSide | null {
  if (nodeVersion === routerVersion) return null;
  return nodeVersion < routerVersion ? "node" : "router";
}

export function versionMismatchMessage(nodeVersion: number, routerVersion: number): string {
  const side = upgradeSide(nodeVersion, routerVersion);
  if (side === null) return "protocol versions match";
  const older = side === "node" ? "this node" : "the router";
  return `protocol version mismatch: node speaks v${nodeVersion}, router speaks v${routerVersion}; ${older} is older: upgrade the ${side}`;
}
