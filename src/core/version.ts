/**
 * @module The version of xim and of its wire protocol, in one place.
 * The build replaces XIM_VERSION through esbuild's `define`; running from
 * source reads package.json.
 */
import { createRequire } from "node:module";

declare const __XIM_VERSION__: string | undefined;

function readVersion(): string {
  if (typeof __XIM_VERSION__ === "string") return __XIM_VERSION__;
  const require = createRequire(import.meta.url);
  return (require("../../package.json") as { version: string }).version;
}

export const XIM_VERSION: string = readVersion();
