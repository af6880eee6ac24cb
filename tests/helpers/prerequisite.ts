/**
 * @module What a test needs from the machine (a tool on PATH, a built
 * binary, root) and what happens without it. On a developer's machine the
 * test is skipped with the reason; in CI (`CI=true`) it fails instead,
 * naming what is missing and how .ci/run provides it, because a CI run that
 * skipped a check has not checked it and must not pass as if it had.
 *
 * Inside a test: `if (skipWithout(t, lackingCommand("objdump", ...))) return;`.
 * For a whole suite: `describe(name, { skip: skipOption(lack) }, ...)`.
 */
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { existsSync } from "node:fs";
import { type TestContext, test } from "node:test";

/** Something a test needs that this machine lacks, and how CI provides it. */
export interface Lack {
  /** "redis-server is not installed", "dist/xim-linux-arm64 is not built". */
  what: string;
  /** ".ci/run installs the Debian package redis-server". */
  provide: string;
}

export function inCi(): boolean {
  return process.env.CI === "true";
}

/** The path of `command` on this process's PATH, as the shell finds it; undefined when absent. */
export function commandPath(command: string): string | undefined {
  const r = spawnSync("sh", ["-c", 'command -v "$1"', "sh", command], { encoding: "utf8" });
  return r.status === 0 && r.stdout.trim() ? r.stdout.trim() : undefined;
}

export function lackingCommand(command: string, provide: string): Lack | undefined {
  return commandPath(command) ? undefined : { what: `${command} is not installed`, provide };
}

export function lackingFile(path: string, what: string, provide: string): Lack | undefined {
  return existsSync(path) ? undefined : { what, provide };
}

export function lackingRoot(why: string): Lack | undefined {
  return process.getuid?.() === 0
    ? undefined
    : { what: `${why} needs root`, provide: ".ci/run runs as root" };
}

function describeLack(lack: Lack): string {
  return `${lack.what} (${lack.provide})`;
}

function ciFailure(lack: Lack): string {
  return `missing in CI, where a skip would hide an unchecked test: ${describeLack(lack)}`;
}

/** Skips the running test (outside CI) or fails it (in CI) when something is lacking; true when skipped. */
export function skipWithout(t: TestContext, lack: Lack | undefined): boolean {
  if (!lack) return false;
  if (inCi()) assert.fail(ciFailure(lack));
  t.skip(describeLack(lack));
  return true;
}

/**
 * The `skip` option of a suite or test that needs what `lack` names: false
 * when nothing is lacking, else the reason. In CI a failing test naming
 * the lack is registered beside it too, so the run fails rather than
 * passing with the suite skipped.
 */
export function skipOption(lack: Lack | undefined): string | false {
  if (!lack) return false;
  if (inCi()) test(`prerequisite: ${lack.what}`, () => assert.fail(ciFailure(lack)));
  return describeLack(lack);
}
