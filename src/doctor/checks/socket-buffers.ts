/**
 * @module socket-buffers: net.core.wmem_max and rmem_max against the 4 MiB
 * ZeroMQ buffers the agent asks for (Linux defaults to 212992 bytes, which
 * silently caps them). Reads the limits through the transport's own reader
 * (src/transport/socket-buffers.ts) from the configurable /proc root, and
 * says whether `xim run` raises them itself at start: CAP_NET_ADMIN or
 * CAP_SYS_ADMIN in CapEff and a writable /proc/sys (a non-privileged
 * container has neither, so the fix belongs on the host: the limits are not
 * per container).
 */
import { access, constants } from "node:fs/promises";
import { join } from "node:path";
import {
  CONTAINER_FIX,
  readSocketBufferLimits,
  SOCKET_BUFFER_BYTES,
  socketBufferAdvice,
} from "../../transport/socket-buffers.ts";
import { type Check, ok, raisesOn, skipped, warn } from "../check.ts";
import { CAP_NET_ADMIN, CAP_SYS_ADMIN, hasCap, isContainer, readCapEff } from "../proc.ts";

async function canWrite(path: string): Promise<boolean> {
  try {
    await access(path, constants.W_OK);
    return true;
  } catch {
    return false;
  }
}

export const socketBuffers: Check = {
  id: "socket-buffers",
  group: "kernel",
  title: "Socket buffer limits (net.core.wmem_max/rmem_max >= 4 MiB)",
  // Two /proc reads; the limits change only when someone runs sysctl, so once a minute is enough.
  watch: raisesOn("socket_buffers_capped", "info", 60_000, ["warn"]),
  async run(ctx) {
    const limits = readSocketBufferLimits(ctx.procRoot);
    if (limits.wmemMax === null && limits.rmemMax === null) {
      return skipped(
        `cannot read ${join(ctx.procRoot, "sys/net/core/wmem_max")} (not Linux, or /proc not mounted)`,
      );
    }
    const advice = socketBufferAdvice(limits);
    const shown = `net.core.wmem_max=${limits.wmemMax ?? "?"}, net.core.rmem_max=${limits.rmemMax ?? "?"}`;
    if (advice.ok) return ok(`${shown} (>= ${SOCKET_BUFFER_BYTES})`);
    const capEff = await readCapEff(ctx.procRoot);
    // The kernel lets CAP_NET_ADMIN (in the network namespace's owner) write net.* sysctls; CAP_SYS_ADMIN also passes.
    const held = [
      capEff !== undefined && hasCap(capEff, CAP_SYS_ADMIN) ? "CAP_SYS_ADMIN" : undefined,
      capEff !== undefined && hasCap(capEff, CAP_NET_ADMIN) ? "CAP_NET_ADMIN" : undefined,
    ].filter((c): c is string => c !== undefined);
    const capable = held.length > 0;
    const writable = capable && (await canWrite(join(ctx.procRoot, "sys", "net", "core", "wmem_max")));
    const who = writable
      ? `this process holds ${held.join(" and ")} and /proc/sys is writable, so \`xim run\` raises them itself at start (and logs it)`
      : capable
        ? `this process holds ${held.join(" and ")} but /proc/sys is read-only, so \`xim run\` cannot raise them (it logs the fix)`
        : "`xim run` cannot raise them itself (no CAP_NET_ADMIN or CAP_SYS_ADMIN: not root or not a privileged container); it logs the fix";
    const host =
      (await isContainer(ctx)) && !writable ? "On the host (the limits are not per container): " : "";
    return warn(
      `${shown}, below the ${SOCKET_BUFFER_BYTES} bytes (4 MiB) the agent asks for, so streaming throughput is capped; ${who}`,
      `${host}${advice.fix.commands.join(" && ")}; to persist across reboots put these lines in /etc/sysctl.d/99-xerotier.conf: ${advice.fix.persist.map((l) => `"${l}"`).join(" and ")}${writable ? "" : `; ${CONTAINER_FIX}`}`,
    );
  },
};
