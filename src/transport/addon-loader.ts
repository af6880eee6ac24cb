/**
 * @module Loads zeromq's native addon inside the single executable. The
 * build points zeromq's own `lib/load-addon.js` at this module. A native
 * addon cannot be loaded from inside the SEA blob, so the addon is embedded
 * as an asset, written once to a content-addressed file (its sha256 in the
 * name) in a folder owned by this user with mode 0700, verified against the
 * embedded hash on every start, and loaded with process.dlopen. A shared
 * temporary folder with a predictable name would let another local user
 * plant a library, hence the ownership and hash checks.
 *
 * Only imported by the SEA bundle (scripts/build.ts); never from source.
 */
import { createHash } from "node:crypto";
import {
  chmodSync,
  existsSync,
  lstatSync,
  mkdirSync,
  readFileSync,
  renameSync,
  writeFileSync,
} from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { getRawAsset } from "node:sea";
import { xdgCacheHome } from "../core/paths.ts";
import { recordExtractedAddon } from "./addon-source.ts";

const ASSET = "zeromq.node";

function sha256(data: Uint8Array): string {
  return createHash("sha256").update(data).digest("hex");
}

/** A folder we own with mode 0700, or an error saying why not. */
function privateFolder(path: string): string {
  mkdirSync(path, { recursive: true, mode: 0o700 });
  const info = lstatSync(path);
  const uid = process.getuid?.();
  if (!info.isDirectory() || (uid !== undefined && info.uid !== uid)) {
    throw new Error(`${path} is not a folder owned by uid ${uid}; refusing to load a native library from it`);
  }
  if ((info.mode & 0o077) !== 0) chmodSync(path, 0o700);
  return path;
}

function candidateFolders(): string[] {
  const uid = process.getuid?.() ?? "user";
  const folders: string[] = [];
  try {
    folders.push(join(xdgCacheHome(), "xim", "addons"));
  } catch {
    // No home folder (env -i in a container without a passwd entry): use the next one.
  }
  folders.push(join(tmpdir(), `xim-${uid}`, "addons"));
  return folders;
}

function extract(bytes: Uint8Array, hash: string): string {
  const errors: string[] = [];
  for (const folder of candidateFolders()) {
    try {
      const dir = privateFolder(folder);
      const file = join(dir, `zeromq-${hash.slice(0, 32)}.node`);
      if (existsSync(file) && sha256(readFileSync(file)) === hash) return file;
      const tmp = `${file}.${process.pid}.tmp`;
      writeFileSync(tmp, bytes, { mode: 0o700 });
      renameSync(tmp, file);
      return file;
    } catch (err) {
      errors.push(`${folder}: ${(err as Error).message}`);
    }
  }
  throw new Error(`cannot extract the zeromq addon: ${errors.join("; ")}`);
}

function load(): unknown {
  const bytes = new Uint8Array(getRawAsset(ASSET));
  const file = extract(bytes, sha256(bytes));
  const mod = { exports: {} as unknown };
  process.dlopen(mod, file);
  recordExtractedAddon(file);
  return mod.exports;
}

const addon = load();
export default addon;
