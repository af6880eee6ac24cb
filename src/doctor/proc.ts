/**
 * @module Reads what the kernel publishes under /proc (capabilities, TCP
 * listeners, processes, container markers), from a configurable
 * root so tests can lay out a fake tree. Nothing here throws for a missing
 * file; callers get undefined and say "skipped" with the reason.
 */
import { readdir, readlink } from "node:fs/promises";
import { join } from "node:path";
import { readKernelFile } from "../core/bounded-read.ts";

export async function readText(path: string): Promise<string | undefined> {
  try {
    return await readKernelFile(path);
  } catch {
    return undefined;
  }
}

export const CAP_SYS_ADMIN = 21;
export const CAP_NET_ADMIN = 12;

/** The effective capability set of this process (CapEff, hex), as a bigint. */
export async function readCapEff(procRoot: string): Promise<bigint | undefined> {
  const text = await readText(join(procRoot, "self", "status"));
  const m = text ? /^CapEff:\s*([0-9a-fA-F]+)/m.exec(text) : null;
  return m ? BigInt(`0x${m[1]}`) : undefined;
}

export function hasCap(capEff: bigint, cap: number): boolean {
  return ((capEff >> BigInt(cap)) & 1n) === 1n;
}

export interface TcpListener {
  address: string;
  port: number;
  inode: number;
  v6: boolean;
}

function decodeV4(hex: string): string {
  const n = Number.parseInt(hex, 16);
  return [n & 255, (n >>> 8) & 255, (n >>> 16) & 255, (n >>> 24) & 255].join(".");
}

function decodeV6(hex: string): string {
  // Four 32-bit words, each in host (little-endian) byte order.
  const bytes: string[] = [];
  for (let w = 0; w < 4; w++) {
    const word = hex.slice(w * 8, w * 8 + 8);
    for (let b = 3; b >= 0; b--) bytes.push(word.slice(b * 2, b * 2 + 2));
  }
  const groups: string[] = [];
  for (let i = 0; i < 16; i += 2) groups.push(`${bytes[i]}${bytes[i + 1]}`.toLowerCase());
  const full = groups.map((g) => g.replace(/^0+(?=.)/, "")).join(":");
  if (full === "0:0:0:0:0:0:0:0") return "::";
  if (full === "0:0:0:0:0:0:0:1") return "::1";
  const mapped = /^0:0:0:0:0:ffff:([0-9a-f]+):([0-9a-f]+)$/.exec(full);
  if (mapped) {
    const v = (Number.parseInt(mapped[1], 16) << 16) | Number.parseInt(mapped[2], 16);
    return `::ffff:${[(v >>> 24) & 255, (v >>> 16) & 255, (v >>> 8) & 255, v & 255].join(".")}`;
  }
  return full;
}

/** LISTEN sockets (state 0A) of /proc/net/tcp and tcp6. */
export async function readTcpListeners(procRoot: string): Promise<TcpListener[]> {
  const out: TcpListener[] = [];
  for (const [file, v6] of [
    ["tcp", false],
    ["tcp6", true],
  ] as const) {
    const text = await readText(join(procRoot, "net", file));
    if (!text) continue;
    for (const line of text.split("\n").slice(1)) {
      const f = line.trim().split(/\s+/);
      if (f.length < 10 || f[3] !== "0A") continue;
      const [addrHex, portHex] = f[1].split(":");
      out.push({
        address: v6 ? decodeV6(addrHex) : decodeV4(addrHex),
        port: Number.parseInt(portHex, 16),
        inode: Number(f[9]),
        v6,
      });
    }
  }
  return out;
}

export function isLoopback(address: string): boolean {
  return address.startsWith("127.") || address === "::1" || address.startsWith("::ffff:127.");
}

export interface ProcessInfo {
  pid: number;
  argv: string[];
}

export async function listProcesses(procRoot: string): Promise<ProcessInfo[]> {
  let names: string[];
  try {
    names = await readdir(procRoot);
  } catch {
    return [];
  }
  const out: ProcessInfo[] = [];
  await Promise.all(
    names
      .filter((n) => /^\d+$/.test(n))
      .map(async (n) => {
        const cmd = await readText(join(procRoot, n, "cmdline"));
        if (cmd) out.push({ pid: Number(n), argv: cmd.split("\0").filter((a) => a.length > 0) });
      }),
  );
  return out.sort((a, b) => a.pid - b.pid);
}

/** Socket inodes held open by a process; undefined when its fds cannot be read (another user's, without root). */
export async function socketInodes(procRoot: string, pid: number): Promise<Set<number> | undefined> {
  const dir = join(procRoot, String(pid), "fd");
  let fds: string[];
  try {
    fds = await readdir(dir);
  } catch {
    return undefined;
  }
  const inodes = new Set<number>();
  await Promise.all(
    fds.map(async (fd) => {
      try {
        const target = await readlink(join(dir, fd));
        const m = /^socket:\[(\d+)\]$/.exec(target);
        if (m) inodes.add(Number(m[1]));
      } catch {
        // closed meanwhile
      }
    }),
  );
  return inodes;
}

/** Container markers: /.dockerenv, /run/.containerenv, or a container runtime in PID 1's cgroup. */
export async function detectContainer(
  fsRoot: string,
  procRoot: string,
  env: Record<string, string | undefined>,
) {
  if (env.container) return true;
  for (const marker of [".dockerenv", "run/.containerenv"]) {
    if ((await readText(join(fsRoot, marker))) !== undefined) return true;
  }
  const cgroup = await readText(join(procRoot, "1", "cgroup"));
  return cgroup !== undefined && /docker|kubepods|containerd|libpod|lxc/.test(cgroup);
}

/** Parent pid from /proc/<pid>/stat (the field after the parenthesised command name). */
export async function readPpid(procRoot: string, pid: number): Promise<number | undefined> {
  const text = await readText(join(procRoot, String(pid), "stat"));
  if (!text) return undefined;
  const rest = text.slice(text.lastIndexOf(")") + 2).split(" ");
  const ppid = Number(rest[1]);
  return Number.isFinite(ppid) ? ppid : undefined;
}

function basename(p: string): string {
  return p.slice(p.lastIndexOf("/") + 1);
}

/**
 * Whether a command line is vLLM: the `vllm` launcher (or the configured
 * one, such as xerotier-vllm) as the program or the script of an
 * interpreter, `python -m vllm.entrypoints...`, or a vLLM worker that
 * renamed itself ("VLLM::EngineCore").
 */
export function isEngineCommand(argv: readonly string[], launcher: string): boolean {
  const names = new Set(["vllm", basename(launcher)]);
  const head = argv.slice(0, 2).map(basename);
  if (head.some((a) => names.has(a))) return true;
  if (argv[0]?.startsWith("VLLM::")) return true;
  return argv.some((a) => a.startsWith("vllm.entrypoints"));
}

/** vLLM processes and all their descendants (EngineCore and workers hold the internal sockets). */
export async function findEngineProcesses(procRoot: string, launcher: string): Promise<ProcessInfo[]> {
  const all = await listProcesses(procRoot);
  const self = process.pid;
  const roots = new Set(
    all.filter((p) => p.pid !== self && isEngineCommand(p.argv, launcher)).map((p) => p.pid),
  );
  if (roots.size === 0) return [];
  const parents = new Map<number, number | undefined>();
  await Promise.all(all.map(async (p) => parents.set(p.pid, await readPpid(procRoot, p.pid))));
  const inTree = (pid: number): boolean => {
    let cur: number | undefined = pid;
    for (let hops = 0; cur !== undefined && cur > 1 && hops < 64; hops++) {
      if (roots.has(cur)) return true;
      cur = parents.get(cur);
    }
    return false;
  };
  return all.filter((p) => inTree(p.pid));
}

/** Whether doctor runs inside a container (the context's override, else detected once per run). */
export function isContainer(ctx: {
  inContainer: boolean | undefined;
  fsRoot: string;
  procRoot: string;
  env: Record<string, string | undefined>;
  shared<T>(key: string, probe: (signal: AbortSignal) => Promise<T>): Promise<T>;
}): Promise<boolean> {
  if (ctx.inContainer !== undefined) return Promise.resolve(ctx.inContainer);
  return ctx.shared("container", () => detectContainer(ctx.fsRoot, ctx.procRoot, ctx.env));
}
