/**
 * @module Reads what the build needs to know from an ELF file without
 * running it: the machine it is for, and the newest glibc symbol version it
 * requires (its glibc floor). Reading the `.gnu.version_r` section directly
 * works for a foreign architecture too (an arm64 addon on an x64 build host)
 * and does not depend on binutils being installed; `objdump -T file | grep
 * -o 'GLIBC_[0-9.]*' | sort -V | tail -1` gives the same answer.
 */
import { readFileSync } from "node:fs";

const SHT_GNU_VERNEED = 0x6ffffffe;

const MACHINES: Record<number, string> = {
  3: "x86",
  40: "arm",
  62: "x86-64",
  183: "aarch64",
  243: "riscv",
};

export interface ElfInfo {
  /** "x86-64", "aarch64", ... or "machine-N" for one this table does not name. */
  machine: string;
  /** The newest GLIBC_x.y version the file needs, e.g. "2.25"; undefined when it needs none. */
  glibcFloor: string | undefined;
  /** Every GLIBC_ version it needs, oldest first. */
  glibcVersions: string[];
}

/** Compares "2.17" and "2.25" as version numbers. */
export function compareVersions(a: string, b: string): number {
  const pa = a.split(".").map(Number);
  const pb = b.split(".").map(Number);
  for (let i = 0; i < Math.max(pa.length, pb.length); i++) {
    const d = (pa[i] ?? 0) - (pb[i] ?? 0);
    if (d !== 0) return d;
  }
  return 0;
}

function cString(buf: Buffer, offset: number): string {
  const end = buf.indexOf(0, offset);
  return buf.toString("latin1", offset, end < 0 ? buf.length : end);
}

/** Parses a 64-bit little-endian ELF file (what Linux x64 and arm64 use). */
export function readElf(bytes: Buffer): ElfInfo {
  if (bytes.length < 64 || bytes.readUInt32BE(0) !== 0x7f454c46) {
    throw new Error("not an ELF file");
  }
  const machineCode = bytes.readUInt16LE(0x12);
  const machine = MACHINES[machineCode] ?? `machine-${machineCode}`;
  if (bytes[4] !== 2 || bytes[5] !== 1) {
    return { machine, glibcFloor: undefined, glibcVersions: [] };
  }
  const shoff = Number(bytes.readBigUInt64LE(0x28));
  const shentsize = bytes.readUInt16LE(0x3a);
  const shnum = bytes.readUInt16LE(0x3c);
  const section = (i: number) => {
    const at = shoff + i * shentsize;
    return {
      type: bytes.readUInt32LE(at + 4),
      offset: Number(bytes.readBigUInt64LE(at + 24)),
      size: Number(bytes.readBigUInt64LE(at + 32)),
      link: bytes.readUInt32LE(at + 40),
      info: bytes.readUInt32LE(at + 44),
    };
  };
  const versions = new Set<string>();
  for (let i = 0; i < shnum; i++) {
    const s = section(i);
    if (s.type !== SHT_GNU_VERNEED) continue;
    const strtab = section(s.link).offset;
    let need = s.offset;
    for (let n = 0; n < s.info; n++) {
      const count = bytes.readUInt16LE(need + 2);
      let aux = need + bytes.readUInt32LE(need + 8);
      for (let k = 0; k < count; k++) {
        const name = cString(bytes, strtab + bytes.readUInt32LE(aux + 8));
        const m = /^GLIBC_(\d+(?:\.\d+)*)$/.exec(name);
        if (m) versions.add(m[1]);
        const next = bytes.readUInt32LE(aux + 12);
        if (next === 0) break;
        aux += next;
      }
      const nextNeed = bytes.readUInt32LE(need + 12);
      if (nextNeed === 0) break;
      need += nextNeed;
    }
  }
  const glibcVersions = [...versions].sort(compareVersions);
  return { machine, glibcFloor: glibcVersions.at(-1), glibcVersions };
}

export function readElfFile(path: string): ElfInfo {
  return readElf(readFileSync(path));
}
