/**
 * Shared setup of the doctor tests: temporary folders, a PATH made of chosen
 * test doubles from tests/fixtures/bin (plus /usr/bin:/bin for the shell
 * tools they use), and a doctor run returning results by check id.
 */
import { mkdirSync, mkdtempSync, rmSync, symlinkSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { loadConfig } from "../../src/core/config/load.ts";
import type { CheckResult } from "../../src/doctor/check.ts";
import { type DoctorRunOptions, runDoctor } from "../../src/doctor/doctor.ts";

export const FIXTURE_BIN = resolve(import.meta.dirname, "../fixtures/bin");

const made: string[] = [];

export function tempDir(prefix = "xim-doctor-"): string {
  const d = mkdtempSync(join(tmpdir(), prefix));
  made.push(d);
  return d;
}

export function cleanup(): void {
  for (const d of made.splice(0)) rmSync(d, { recursive: true, force: true });
}

/** A folder holding links to the named test doubles only, so the others count as "not installed". */
export function binWith(tools: readonly string[]): string {
  const dir = tempDir("xim-bin-");
  for (const t of tools) symlinkSync(join(FIXTURE_BIN, t), join(dir, t));
  return dir;
}

export function pathWith(tools: readonly string[]): string {
  return `${binWith(tools)}:/usr/bin:/bin`;
}

/** A fake /dev with the named nodes (plain files: the checks look at names, not device numbers). */
export function devWith(nodes: readonly string[]): string {
  const dir = tempDir("xim-dev-");
  for (const n of nodes) {
    mkdirSync(join(dir, n, ".."), { recursive: true });
    rmSync(join(dir, n), { force: true });
    mkdirSync(join(dir, n), { recursive: true });
  }
  return dir;
}

export type Results = Record<string, CheckResult>;

export async function doctor(
  env: Record<string, string | undefined>,
  options: Partial<Omit<DoctorRunOptions, "loaded" | "env">> = {},
): Promise<Results> {
  const home = env.HOME ?? tempDir("xim-home-");
  const fullEnv = { HOME: home, ...env };
  const loaded = loadConfig({ env: fullEnv, cwd: home });
  const report = await runDoctor({ loaded, env: fullEnv, ...options });
  return Object.fromEntries(report.checks.map((c) => [c.id, c]));
}

/** "id=status" for the given checks, for compact assertions. */
export function statuses(results: Results, ids: readonly string[]): Record<string, string> {
  return Object.fromEntries(ids.map((id) => [id, results[id]?.status ?? "absent"]));
}
