/**
 * @module `xim --version [--verbose]`. The verbose form proves the binary's
 * runtime works: Node version, where the zeromq addon came from, libzmq's
 * version, and whether CURVE works (by generating a key pair).
 */
import { XIM_VERSION } from "../core/version.ts";
import { addonSource } from "../transport/addon-source.ts";
import { zmqInfo } from "../transport/zmq-info.ts";

export function versionLine(): string {
  return XIM_VERSION;
}

export async function verboseVersion(): Promise<string> {
  const z = zmqInfo();
  const lines = [
    `xim ${XIM_VERSION}`,
    `node ${process.version} (${process.platform}-${process.arch})`,
    `zeromq addon: ${addonSource()}`,
    `libzmq ${z.libzmq}`,
    `curve: ${z.curve && z.curveKeyPair ? "available (key pair generated)" : `unavailable${z.error ? ` (${z.error})` : ""}`}`,
  ];
  return `${lines.join("\n")}\n`;
}
