import assert from "node:assert/strict";
import { describe, test } from "node:test";
import { pinnedNode, RELEASE_ARCHES, releaseName } from "../../scripts/release.ts";

describe("release inputs", () => {
  test("each release architecture has its Node pinned in package.json and locked with an integrity hash", () => {
    const versions = new Set<string>();
    for (const arch of RELEASE_ARCHES) {
      const pin = pinnedNode(arch);
      assert.equal(pin.name, `node-linux-${arch}`);
      assert.match(pin.integrity, /^sha512-/);
      versions.add(pin.version);
    }
    // The SEA blob is made by the host's Node and must match the target's version.
    assert.equal(versions.size, 1, `node-linux-* versions differ: ${[...versions].join(", ")}`);
  });

  test("release binaries are named xim-linux-<arch>", () => {
    assert.deepEqual(RELEASE_ARCHES.map(releaseName), ["xim-linux-x64", "xim-linux-arm64"]);
  });
});
