import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import { join } from "node:path";
import { describe, test } from "node:test";
import { chooseAddon, ROOT } from "../../scripts/build.ts";
import { compareVersions, readElf, readElfFile } from "../../scripts/elf.ts";
import { lackingCommand, skipWithout } from "../helpers/prerequisite.ts";

const addons = join(ROOT, "node_modules", "zeromq", "build", "linux");

function objdumpFloor(file: string): string | undefined {
  try {
    const out = execFileSync("objdump", ["-T", file], { encoding: "utf8", maxBuffer: 64 * 1024 * 1024 });
    const versions = [...out.matchAll(/GLIBC_([0-9.]+)/g)].map((m) => m[1]);
    return versions.sort(compareVersions).at(-1);
  } catch {
    return undefined;
  }
}

describe("reading ELF files", () => {
  test("the x64 and arm64 zeromq addons report their machine and glibc floor", () => {
    const x64 = readElfFile(join(addons, "x64", "node", "glibc-127-Release", "addon.node"));
    assert.equal(x64.machine, "x86-64");
    assert.equal(x64.glibcFloor, "2.25");
    const arm64 = readElfFile(join(addons, "arm64", "node", "glibc-127-Release", "addon.node"));
    assert.equal(arm64.machine, "aarch64");
    assert.equal(arm64.glibcFloor, "2.25");
    assert.equal(
      readElfFile(join(addons, "x64", "node", "glibc-115-Release", "addon.node")).glibcFloor,
      "2.38",
    );
  });

  test("the floor agrees with objdump where binutils is installed", (t) => {
    const file = join(addons, "x64", "node", "glibc-115-Release", "addon.node");
    if (skipWithout(t, lackingCommand("objdump", ".ci/run installs the Debian package binutils"))) return;
    const expected = objdumpFloor(file);
    assert.ok(expected, `objdump -T ${file} named no GLIBC version`);
    assert.equal(readElfFile(file).glibcFloor, expected);
  });

  test("a file that is not ELF is refused", () => {
    assert.throws(() => readElf(Buffer.from("#!/bin/sh\necho hi\n".padEnd(80, " "))), /not an ELF file/);
  });

  test("versions compare as numbers, not strings", () => {
    assert.ok(compareVersions("2.9", "2.25") < 0);
    assert.ok(compareVersions("2.38", "2.25") > 0);
    assert.equal(compareVersions("2.25", "2.25.0"), 0);
  });
});

describe("choosing the addon to embed", () => {
  for (const arch of ["x64", "arm64"] as const) {
    test(`linux-${arch}: the manifest's glibc build with the lowest floor`, () => {
      const choice = chooseAddon(arch);
      assert.equal(choice.relative, `linux/${arch}/node/glibc-127-Release/addon.node`);
      assert.equal(choice.glibcFloor, "2.25");
      for (const other of choice.candidates) {
        assert.ok(
          compareVersions(choice.glibcFloor, other.glibcFloor) <= 0,
          `${other.relative} has a lower floor`,
        );
      }
    });
  }
});
