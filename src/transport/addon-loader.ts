/**
 * @module Loads zeromq's native addon inside the single executable. The
 * build points zeromq's own `lib/load-addon.js` at this module. A native
 * addon cannot be loaded from inside the SEA blob, so the addon is embedded
 * as the asset `zeromq.node`, written once to a content-addressed file in a
 * folder only this user can change (addon-extract.ts says why and how), and
 * loaded with process.dlopen.
 *
 * Only imported by the SEA bundle (scripts/build.ts); never from source.
 */
import { getRawAsset } from "node:sea";
import { extractAndLoad } from "./addon-extract.ts";
import { recordExtractedAddon } from "./addon-source.ts";

const ASSET = "zeromq.node";

function load(): unknown {
  const bytes = new Uint8Array(getRawAsset(ASSET));
  try {
    const { file, value } = extractAndLoad(bytes, (path) => {
      const mod = { exports: {} as unknown };
      process.dlopen(mod, path);
      return mod.exports;
    });
    recordExtractedAddon(file);
    return value;
  } catch (err) {
    // This runs while the bundle's modules initialise, before the CLI exists
    // to report errors; zeromq cannot be defined without its addon, so stop
    // here with the reason instead of a stack trace through the bundle.
    process.stderr.write(`xim: ${(err as Error).message}\n`);
    process.exit(1);
  }
}

const addon = load();
export default addon;
