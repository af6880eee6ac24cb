/**
 * The release binaries `npm run release` writes to dist/: each is an ELF
 * of its architecture, the arm64 one starts under qemu-user and proves
 * CURVE works, and SHA256SUMS verifies them. They exist only after
 * `npm run release`, so this file runs in `npm run test:deploy` (CI runs it
 * right after the release) and not in `npm test`, which CI runs before.
 */
import assert from "node:assert/strict";
import { execFileSync, spawnSync } from "node:child_process";
import { existsSync, mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { describe, test } from "node:test";
import { ROOT } from "../../scripts/build.ts";
import { readElfFile } from "../../scripts/elf.ts";
import { RELEASE_ARCHES, releaseName } from "../../scripts/release.ts";
import { sha256Hex } from "../../src/core/sha256.ts";
import { commandPath, lackingCommand, lackingFile, skipWithout } from "../helpers/prerequisite.ts";

const BUILT_BY_RELEASE = "`npm run release` builds it; .ci/run runs `npm run test:deploy` right after";
/** Debian packages: the emulator and the arm64 C/C++ runtime the binary's addon links against. */
const QEMU_PACKAGES =
  ".ci/run installs the Debian packages qemu-user, libstdc++6-arm64-cross and libatomic1-arm64-cross";
const ARM64_SYSROOT = "/usr/aarch64-linux-gnu";

function built(path: string) {
  return lackingFile(join(ROOT, path), `${path} is not built`, BUILT_BY_RELEASE);
}

describe("release binaries", () => {
  for (const arch of RELEASE_ARCHES) {
    const name = `dist/${releaseName(arch)}`;
    const want = arch === "arm64" ? /ARM aarch64/ : /x86-64/;
    test(`${name} is a ${arch} ELF`, (t) => {
      if (skipWithout(t, built(name))) return;
      const path = join(ROOT, name);
      if (commandPath("file")) {
        assert.match(execFileSync("file", ["-b", path], { encoding: "utf8" }), want);
      } else {
        t.diagnostic("`file` is not installed; read the ELF header instead");
      }
      assert.equal(readElfFile(path).machine, arch === "arm64" ? "aarch64" : "x86-64");
    });
  }

  test("dist/xim-linux-arm64 runs under qemu-aarch64 and proves CURVE works", (t) => {
    const name = `dist/${releaseName("arm64")}`;
    // Not a missing prerequisite: an arm64 host runs the binary natively, and .ci/run's smoke test covers that.
    if (process.arch === "arm64")
      return t.skip("an arm64 host runs it natively (the smoke test covers that)");
    const runtime = join(ARM64_SYSROOT, "lib", "libstdc++.so.6");
    const atomic = join(ARM64_SYSROOT, "lib", "libatomic.so.1");
    const lack =
      built(name) ??
      lackingCommand("qemu-aarch64", QEMU_PACKAGES) ??
      lackingFile(runtime, `${runtime} (the arm64 C++ runtime) is not installed`, QEMU_PACKAGES) ??
      lackingFile(atomic, `${atomic} (the arm64 atomics runtime) is not installed`, QEMU_PACKAGES);
    if (skipWithout(t, lack)) return;
    const home = mkdtempSync(join(tmpdir(), "xim-arm64-"));
    try {
      const r = spawnSync(
        commandPath("qemu-aarch64") as string,
        [join(ROOT, name), "--version", "--verbose"],
        {
          env: { QEMU_LD_PREFIX: ARM64_SYSROOT, HOME: home },
          cwd: home,
          encoding: "utf8",
          // Emulated start-up of a 150 MB binary takes a few seconds; allow plenty.
          timeout: 120_000,
        },
      );
      assert.equal(r.status, 0, `${r.stdout}${r.stderr}`);
      assert.match(r.stdout, /linux-arm64/);
      assert.match(r.stdout, /libzmq 4\.3\.5/);
      assert.match(r.stdout, /curve: available \(key pair generated\)/);
    } finally {
      rmSync(home, { recursive: true, force: true });
    }
  });

  test("dist/SHA256SUMS matches the binaries it lists", (t) => {
    if (skipWithout(t, built("dist/SHA256SUMS"))) return;
    for (const line of readFileSync(join(ROOT, "dist", "SHA256SUMS"), "utf8")
      .trim()
      .split("\n")) {
      const [hash, file] = line.split(/\s+/);
      assert.ok(existsSync(join(ROOT, "dist", file)), `SHA256SUMS lists ${file}, which is not in dist/`);
      assert.equal(sha256Hex(readFileSync(join(ROOT, "dist", file))), hash, file);
    }
  });
});
