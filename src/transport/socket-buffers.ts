/**
 * @module The 4 MiB ZeroMQ socket buffers the node asks for, and the
 * kernel limits that silently cap them (net.core.wmem_max / rmem_max,
 * 212992 bytes by default on Linux). `xim run` tries to raise low limits
 * once at start (writing /proc/sys works as root in a privileged container,
 * or with CAP_NET_ADMIN/CAP_SYS_ADMIN and a writable /proc/sys) and logs
 * the outcome once: raised, or not permitted with the host's fix. The
 * /proc root is a parameter (XIM_PROC_ROOT) so `xim doctor` and tests read
 * and write a fake sysctl tree, never the real one.
 */
import { writeFile } from "node:fs/promises";
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

export type RaiseOutcome =
  | { kind: "ok"; advice: SocketBufferAdvice }
  | { kind: "raised"; before: SocketBufferLimits; advice: SocketBufferAdvice; message: string }
  | { kind: "not-permitted"; advice: SocketBufferAdvice; errors: string[]; message: string };

/** What a container needs for the agent to raise the limits itself, beside the host's fix. */
export const CONTAINER_FIX =
  "or let the agent raise them at start: run its container privileged (the compose files' `privileged: true`)";

/**
 * Raise net.core.wmem_max/rmem_max to `wanted` when they are below it (only
 * those that are low; unreadable ones are left alone), then read them back.
 */
export async function raiseSocketBuffers(
  procRoot = "/proc",
  wanted = SOCKET_BUFFER_BYTES,
): Promise<RaiseOutcome> {
  const before = readSocketBufferLimits(procRoot);
  const advice = socketBufferAdvice(before, wanted);
  if (advice.ok) return { kind: "ok", advice };
  const errors: string[] = [];
  const low: Array<[string, number | null]> = [
    ["wmem_max", before.wmemMax],
    ["rmem_max", before.rmemMax],
  ];
  for (const [name, value] of low) {
    if (value === null || value >= wanted) continue;
    try {
      await writeFile(join(procRoot, "sys", "net", "core", name), `${wanted}\n`);
    } catch (err) {
      errors.push(`net.core.${name}: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}`);
    }
  }
  const after = socketBufferAdvice(readSocketBufferLimits(procRoot), wanted);
  if (after.ok) {
    const raised = low
      .filter(([, v]) => v !== null && v < wanted)
      .map(([name, v]) => `net.core.${name} ${v} -> ${wanted}`);
    return {
      kind: "raised",
      before,
      advice: after,
      message: `raised the kernel socket buffer limits (${raised.join(", ")}) so the ${wanted}-byte ZeroMQ buffers take effect`,
    };
  }
  const why = errors.length ? errors.join(", ") : "the kernel kept the old values";
  return {
    kind: "not-permitted",
    advice: after,
    errors,
    message: `${after.message}. xim could not raise them itself (${why}: writing /proc/sys needs a privileged container, or CAP_NET_ADMIN/CAP_SYS_ADMIN with a writable /proc/sys); ${CONTAINER_FIX}`,
  };
}

/**
 * At `xim run`'s start: raise low limits and log the outcome once per
 * process (info when raised, a warning with the fix when not permitted);
 * the session's later warnSocketBuffersOnce then stays quiet.
 */
export async function raiseSocketBuffersOnce(logger: Logger, procRoot = "/proc"): Promise<RaiseOutcome> {
  const outcome = await raiseSocketBuffers(procRoot);
  if (!warned) {
    warned = true;
    if (outcome.kind === "raised") logger.info({ limits: outcome.advice.limits }, outcome.message);
    else if (outcome.kind === "not-permitted")
      logger.warn({ limits: outcome.advice.limits, fix: outcome.advice.fix }, outcome.message);
  }
  return outcome;
}
