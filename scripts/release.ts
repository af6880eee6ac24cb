/**
 * @module `node scripts/release.ts [--arch x64,arm64]`: the release
 * binaries `dist/xim-linux-x64` and `dist/xim-linux-arm64`, and
 * `dist/SHA256SUMS` (checked with `sha256sum -c SHA256SUMS`).
 *
 * One bundle serves every architecture (it is JavaScript); what differs is
 * the Node binary the bundle is injected into and the zeromq addon embedded
 * beside it. `node --build-sea` runs on the build host's Node and writes
 * into the target's binary through its `executable` field; that works for
 * a foreign-architecture ELF (checked: an aarch64 result from an x64 host).
 * V8's code cache is turned off for a foreign target, because it only loads
 * on the architecture that made it.
 *
 * The target's Node comes from the npm package `node-linux-<arch>` at the
 * version package.json pins. npm skips it on other hosts (its os/cpu
 * fields), so it is fetched with `npm pack` and checked against the
 * lockfile's integrity hash before use.
 */
import { execFileSync } from "node:child_process";
import { createHash } from "node:crypto";
import { existsSync, mkdirSync, mkdtempSync, readFileSync, renameSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { basename, join } from "node:path";
import { parseArgs } from "node:util";
import { type Arch, buildSea, bundle, describe, ROOT } from "./build.ts";

export const RELEASE_ARCHES: readonly Arch[] = ["x64", "arm64"];

export function releaseName(arch: Arch): string {
  return `xim-linux-${arch}`;
}

interface PackageLock {
  packages: Record<string, { version?: string; integrity?: string }>;
}

/** The pinned version and lockfile integrity of `node-linux-<arch>`. */
export function pinnedNode(
  arch: Arch,
  root: string = ROOT,
): { name: string; version: string; integrity: string } {
  const name = `node-linux-${arch}`;
  const pkg = JSON.parse(readFileSync(join(root, "package.json"), "utf8")) as {
    optionalDependencies?: Record<string, string>;
  };
  const version = pkg.optionalDependencies?.[name];
  if (!version) throw new Error(`package.json does not pin ${name} in optionalDependencies`);
  const lock = JSON.parse(readFileSync(join(root, "package-lock.json"), "utf8")) as PackageLock;
  const entry = lock.packages[`node_modules/${name}`];
  if (!entry?.integrity || entry.version !== version) {
    throw new Error(
      `package-lock.json has no ${name}@${version} entry with an integrity hash; run npm install`,
    );
  }
  return { name, version, integrity: entry.integrity };
}

function integrityOf(bytes: Buffer, algorithm: string): string {
  return `${algorithm}-${createHash(algorithm).update(bytes).digest("base64")}`;
}

/**
 * The Node binary for `arch`: the installed package when npm installed it
 * (this host's architecture), otherwise the package's tarball fetched with
 * `npm pack`, verified against the lockfile, and unpacked into a cache.
 */
export function nodeForRelease(arch: Arch, root: string = ROOT): { executable: string; version: string } {
  const pin = pinnedNode(arch, root);
  const installed = join(root, "node_modules", pin.name, "bin", "node");
  if (existsSync(installed)) return { executable: installed, version: pin.version };

  const cache = join(root, "node_modules", ".cache", "xim-release", `${pin.name}-${pin.version}`);
  const cached = join(cache, "package", "bin", "node");
  if (existsSync(cached)) return { executable: cached, version: pin.version };

  const work = mkdtempSync(join(tmpdir(), "xim-release-"));
  try {
    const out = execFileSync(
      "npm",
      ["pack", `${pin.name}@${pin.version}`, "--pack-destination", work, "--silent"],
      {
        cwd: work,
        encoding: "utf8",
        stdio: ["ignore", "pipe", "inherit"],
      },
    );
    const tarball = join(work, basename(out.trim().split("\n").at(-1) ?? ""));
    const bytes = readFileSync(tarball);
    const [algorithm] = pin.integrity.split("-", 1);
    const actual = integrityOf(bytes, algorithm);
    if (actual !== pin.integrity) {
      throw new Error(
        `${pin.name}@${pin.version}: tarball integrity ${actual} does not match the lockfile's ${pin.integrity}`,
      );
    }
    // Unpack beside the cache and rename, so an interrupted run never leaves a half-written node.
    const unpack = `${cache}.partial-${process.pid}`;
    mkdirSync(unpack, { recursive: true });
    try {
      execFileSync("tar", ["-xzf", tarball, "-C", unpack, "package/bin/node", "package/package.json"]);
      rmSync(cache, { recursive: true, force: true });
      renameSync(unpack, cache);
    } finally {
      rmSync(unpack, { recursive: true, force: true });
    }
  } finally {
    rmSync(work, { recursive: true, force: true });
  }
  return { executable: cached, version: pin.version };
}

export function sha256File(path: string): string {
  return createHash("sha256").update(readFileSync(path)).digest("hex");
}

export interface ReleaseFile {
  arch: Arch;
  path: string;
  bytes: number;
  sha256: string;
  addon: string;
  glibcFloor: string;
}

/** Builds the release binaries for `arches` into `dist` and writes dist/SHA256SUMS. */
export async function release(
  arches: readonly Arch[] = RELEASE_ARCHES,
  root: string = ROOT,
): Promise<ReleaseFile[]> {
  const dist = join(root, "dist");
  const work = join(dist, "release");
  mkdirSync(work, { recursive: true });
  const bundleFile = join(work, "xim.cjs");
  await bundle(bundleFile, root);
  const files: ReleaseFile[] = [];
  for (const arch of arches) {
    const node = nodeForRelease(arch, root);
    const built = await buildSea({
      arch,
      output: join(dist, releaseName(arch)),
      workDir: work,
      bundleFile,
      executable: node.executable,
      nodeVersion: node.version,
      root,
    });
    console.log(describe(built, root));
    files.push({
      arch,
      path: built.output,
      bytes: built.bytes,
      sha256: sha256File(built.output),
      addon: built.addon.relative,
      glibcFloor: built.addon.glibcFloor,
    });
  }
  // Every release binary present (one built earlier for another --arch too), hashed now.
  const sums = RELEASE_ARCHES.map((a) => join(dist, releaseName(a)))
    .filter((p) => existsSync(p))
    .map((p) => `${sha256File(p)}  ${basename(p)}\n`)
    .join("");
  writeFileSync(join(dist, "SHA256SUMS"), sums);
  return files;
}

if (import.meta.main) {
  const { values } = parseArgs({ options: { arch: { type: "string" } } });
  const arches = (values.arch ? values.arch.split(",") : RELEASE_ARCHES) as Arch[];
  for (const a of arches) {
    if (!RELEASE_ARCHES.includes(a)) throw new Error(`--arch ${a}: accepted: ${RELEASE_ARCHES.join(", ")}`);
  }
  const files = await release(arches);
  console.log("dist/SHA256SUMS:");
  for (const f of files) console.log(`  ${f.sha256}  ${basename(f.path)}`);
}
