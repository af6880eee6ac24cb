/**
 * @module CPU time and peak memory of running processes, read from /proc:
 * utime+stime from /proc/PID/stat (clock ticks; 100 per second on Linux)
 * and VmHWM (peak resident set) from /proc/PID/status.
 */
import { readFileSync } from "node:fs";

const TICKS_PER_SECOND = 100;

export interface ProcSample {
  cpuSeconds: number;
  peakRssBytes: number;
}

export function sampleProcess(pid: number): ProcSample {
  const stat = readFileSync(`/proc/${pid}/stat`, "utf8");
  // Fields after the command name (which may contain spaces) start after the last ')'.
  const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
  const utime = Number(fields[11]);
  const stime = Number(fields[12]);
  const status = readFileSync(`/proc/${pid}/status`, "utf8");
  const hwm = /VmHWM:\s+(\d+) kB/.exec(status);
  return { cpuSeconds: (utime + stime) / TICKS_PER_SECOND, peakRssBytes: hwm ? Number(hwm[1]) * 1024 : 0 };
}

/** CPU seconds spent between two samples, and the peak RSS at the end. */
export function delta(before: ProcSample, after: ProcSample): ProcSample {
  return { cpuSeconds: after.cpuSeconds - before.cpuSeconds, peakRssBytes: after.peakRssBytes };
}
