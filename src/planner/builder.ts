/**
 * @module The plan under construction: flags, environment, decisions and
 * warnings collected by the planner's steps, in the order they are made.
 * Each flag is recorded with its decision so the table and argv agree.
 */
import type { Decision, PlanFile } from "./plan-types.ts";

export class PlanBuilder {
  readonly flags = new Map<string, string | null>();
  readonly env: Record<string, string> = {};
  readonly decisions: Decision[] = [];
  readonly warnings: string[] = [];
  readonly files: PlanFile[] = [];

  /** A flag with a value (`value` null: a bare switch such as --enforce-eager). */
  flag(flag: string, value: string | null, reason: string, source: Decision["source"] = "auto"): void {
    this.flags.set(flag, value);
    this.decisions.push({ setting: flag, value: value ?? "on", reason, source });
  }

  setEnv(name: string, value: string, reason: string, source: Decision["source"] = "auto"): void {
    this.env[name] = value;
    this.decisions.push({ setting: name, value, reason, source });
  }

  /** A decision that is not itself a flag (a method chosen, a flag deliberately left out). */
  note(setting: string, value: string, reason: string, source: Decision["source"] = "auto"): void {
    this.decisions.push({ setting, value, reason, source });
  }

  warn(message: string): void {
    this.warnings.push(message);
  }

  args(order: readonly string[]): string[] {
    const out: string[] = [];
    const keys = [
      ...order.filter((f) => this.flags.has(f)),
      ...[...this.flags.keys()].filter((f) => !order.includes(f)),
    ];
    for (const f of keys) {
      const value = this.flags.get(f);
      out.push(f);
      if (value !== null && value !== undefined) out.push(value);
    }
    return out;
  }
}

export const GiB = 1024 ** 3;
export const MiB = 1024 ** 2;

export function gib(bytes: number): string {
  return `${(bytes / GiB).toFixed(1)} GiB`;
}
