/**
 * @module CPU pinning for `npm run bench -- --pin`: the relay under test
 * (nginx's master and workers; xim's router and node) on CPUs of its own,
 * the client (this process) and the engine on the others, as on a GPU host
 * where the relay does not compete with the load for cores. Done with
 * util-linux's `taskset`: processes are started under it (so every thread
 * they make inherits the mask) and re-pinned with `-a -p` (every thread of
 * a running process: the bench itself, the engine a node starts).
 */
import { execFileSync } from "node:child_process";
import { cpus } from "node:os";

/** Which CPUs (taskset lists, e.g. "1" or "2-3") the relay and the load run on. */
export interface Pinning {
  relay: string;
  load: string;
}

/**
 * The relay on the last half of the CPUs (at least one), the client and
 * the engine on the rest; `relayCpus` (a taskset list) overrides the
 * relay's share. Needs at least 2 CPUs.
 */
export function planPinning(relayCpus?: string): Pinning {
  const n = cpus().length;
  if (n < 2) throw new Error(`--pin needs at least 2 CPUs, this machine has ${n}`);
  const all = Array.from({ length: n }, (_, i) => i);
  const relay = relayCpus ? expand(relayCpus, n) : all.slice(n - Math.max(1, Math.floor(n / 2)));
  const load = all.filter((c) => !relay.includes(c));
  if (load.length === 0)
    throw new Error(`--relay-cpus ${relayCpus} leaves no CPU for the client and the engine`);
  return { relay: relay.join(","), load: load.join(",") };
}

/** "0,2-3" as [0, 2, 3], each below `n`. */
function expand(list: string, n: number): number[] {
  const out: number[] = [];
  for (const part of list.split(",")) {
    const m = /^(\d+)(?:-(\d+))?$/.exec(part.trim());
    if (!m) throw new Error(`--relay-cpus takes CPU numbers and ranges like 1 or 2-3,6, not '${list}'`);
    for (let c = Number(m[1]); c <= Number(m[2] ?? m[1]); c++) {
      if (c >= n) throw new Error(`--relay-cpus names CPU ${c}; this machine has CPUs 0-${n - 1}`);
      out.push(c);
    }
  }
  return out;
}

/** How many CPUs a taskset list names. */
export function cpuCount(list: string): number {
  return list.split(",").length;
}

/** The command and arguments that run `command args` on `cpuList` (unchanged without one). */
export function pinnedCommand(command: string, args: string[], cpuList?: string): [string, string[]] {
  return cpuList ? ["taskset", ["-c", cpuList, command, ...args]] : [command, args];
}

/** Move every thread of a running process to `cpuList`. */
export function pinProcess(pid: number, cpuList: string): void {
  execFileSync("taskset", ["-a", "-p", "-c", cpuList, String(pid)], { stdio: "ignore" });
}

/** A process's children (its direct ones), by /proc. */
export function childrenOf(pid: number): number[] {
  try {
    const out = execFileSync("pgrep", ["-P", String(pid)], { encoding: "utf8" });
    return out.trim().split("\n").filter(Boolean).map(Number);
  } catch {
    return []; // pgrep exits 1 when there is none
  }
}

/** Every CPU of this machine, as a taskset list (to unpin). */
export function allCpus(): string {
  return `0-${cpus().length - 1}`;
}
