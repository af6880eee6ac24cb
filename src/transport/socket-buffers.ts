/**
 * @module The 4 MiB ZeroMQ socket buffers the node asks for, and the
 * kernel limits that silently cap them (net.core.wmem_max / rmem_max,
 * 212992 bytes by default on Linux). The /proc root is a parameter so
 * `xim doctor` and tests can read a fake sysctl tree.
 */
import { join } from "node:path";
import { FileLimits, readTextBoundedSync } from "../core/bounded-read.ts";
import type { Logger } from "../core/log.ts";

export const SOCKET_BUFFER_BYTES = 4 * 1024 * 1024;

export interface SocketBufferLimits {
  /** net.core.wmem_max in bytes, or null when it cannot be read (not Linux, no /proc). */
  wmemMax: number | null;
  rmemMax: number | null;
}

function readNumber(path: string): number | null {
  try {
    const value = Number.parseInt(
      readTextBoundedSync(path, { what: "the kernel file", maxBytes: FileLimits.kernelFile }).trim(),
      10,
    );
    return Number.isFinite(value) ? value : null;
  } catch {
    return null;
  }
}

export function readSocketBufferLimits(procRoot = "/proc"): SocketBufferLimits {
  return {
    wmemMax: readNumber(join(procRoot, "sys", "net", "core", "wmem_max")),
    rmemMax: readNumber(join(procRoot, "sys", "net", "core", "rmem_max")),
  };
}

export interface SocketBufferAdvice {
  /** Whether the kernel lets the sockets have the wanted size (unknown limits count as ok). */
  ok: boolean;
  limits: SocketBufferLimits;
  wanted: number;
  /** Commands that raise the limits now, and lines for /etc/sysctl.d/99-xerotier.conf. */
  fix: { commands: string[]; persist: string[] };
  message: string;
}

export function socketBufferAdvice(
  limits: SocketBufferLimits,
  wanted = SOCKET_BUFFER_BYTES,
): SocketBufferAdvice {
  const low: string[] = [];
  if (limits.wmemMax !== null && limits.wmemMax < wanted) low.push(`net.core.wmem_max=${limits.wmemMax}`);
  if (limits.rmemMax !== null && limits.rmemMax < wanted) low.push(`net.core.rmem_max=${limits.rmemMax}`);
  const fix = {
    commands: [`sudo sysctl -w net.core.wmem_max=${wanted}`, `sudo sysctl -w net.core.rmem_max=${wanted}`],
    persist: [`net.core.wmem_max = ${wanted}`, `net.core.rmem_max = ${wanted}`],
  };
  if (low.length === 0) {
    return { ok: true, limits, wanted, fix, message: `kernel socket buffer limits allow ${wanted} bytes` };
  }
  return {
    ok: false,
    limits,
    wanted,
    fix,
    message: `the kernel caps ZeroMQ socket buffers below the ${wanted} bytes xim asks for (${low.join(", ")}); streaming throughput may suffer. Fix: ${fix.commands.join(" && ")}; to persist, put "${fix.persist.join('" and "')}" in /etc/sysctl.d/99-xerotier.conf`,
  };
}

let warned = false;

/** Log the advice once per process when the kernel caps the buffers. */
export function warnSocketBuffersOnce(logger: Logger, procRoot = "/proc"): SocketBufferAdvice {
  const advice = socketBufferAdvice(readSocketBufferLimits(procRoot));
  if (!advice.ok && !warned) {
    warned = true;
    logger.warn({ limits: advice.limits, fix: advice.fix }, advice.message);
  }
  return advice;
}
