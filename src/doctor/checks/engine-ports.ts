/**
 * @module engine-ports: every TCP port a running vLLM (and its EngineCore
 * and worker processes) listens on must be bound to loopback. vLLM's
 * internal ZeroMQ sockets accept pickled objects (CVE-2025-30165,
 * CVE-2025-32444), so one bound to 0.0.0.0 is remote code execution.
 * Listeners come from /proc/net/tcp{,6}, matched to the engine's socket
 * inodes under /proc/<pid>/fd (readable for the same user, or root).
 */
import { type Check, fail, ok, skipped } from "../check.ts";
import { findEngineProcesses, isLoopback, readTcpListeners, socketInodes } from "../proc.ts";

export const engineProcessPorts: Check = {
  id: "engine-ports",
  group: "engine",
  title: "Engine ports bound to loopback only",
  async run(ctx) {
    const procs = await findEngineProcesses(ctx.procRoot, ctx.config.vllmPath);
    if (procs.length === 0)
      return skipped("no vLLM process is running (start `xim run`, then run doctor again)");
    const listeners = await readTcpListeners(ctx.procRoot);
    const byInode = new Map(listeners.map((l) => [l.inode, l]));
    const unreadable: number[] = [];
    const open: string[] = [];
    const local: string[] = [];
    for (const p of procs) {
      const inodes = await socketInodes(ctx.procRoot, p.pid);
      if (!inodes) {
        unreadable.push(p.pid);
        continue;
      }
      for (const inode of inodes) {
        const l = byInode.get(inode);
        if (!l) continue;
        const where = `${l.v6 ? `[${l.address}]` : l.address}:${l.port} (pid ${p.pid})`;
        (isLoopback(l.address) ? local : open).push(where);
      }
    }
    if (open.length > 0) {
      return fail(
        `vLLM listens beyond loopback: ${open.join(", ")}`,
        "Restart the engine bound to loopback (`xim run` starts vLLM with --host 127.0.0.1; a vLLM started by hand needs `--host 127.0.0.1`), and block these ports with a firewall: vLLM's internal ZeroMQ sockets unpickle what they receive (CVE-2025-30165, CVE-2025-32444).",
      );
    }
    if (unreadable.length === procs.length) {
      return skipped(
        `cannot read the sockets of vLLM (pid ${unreadable.join(", ")}): run doctor as the engine's user or root`,
      );
    }
    const note = unreadable.length ? `; pid ${unreadable.join(", ")} not readable` : "";
    return ok(
      `${procs.length} vLLM process(es); listeners: ${local.length ? local.join(", ") : "none"} (loopback only)${note}`,
    );
  },
};
