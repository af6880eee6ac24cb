/**
 * @module A router and nodes on one machine, as the demo, the benchmarks and
 * the end-to-end tests run them: the router's command line (every endpoint
 * on 127.0.0.1 with a port chosen by the OS, the bound addresses printed as
 * one JSON line: `httpUrl`, `enrollUrl`, ...) and an environment that keeps
 * every process's state in one temporary folder.
 */
import { join } from "node:path";

/**
 * An environment whose home and XDG folders are inside `dir`, so the
 * processes share nothing with the user's own state; `extra` is added.
 */
export function sandboxEnv(
  dir: string,
  extra: Record<string, string | undefined> = {},
): Record<string, string | undefined> {
  return {
    PATH: process.env.PATH,
    HOME: dir,
    XDG_CONFIG_HOME: join(dir, "config"),
    XDG_STATE_HOME: join(dir, "state"),
    XDG_CACHE_HOME: join(dir, "cache"),
    NO_COLOR: "1",
    ...extra,
  };
}

/** `xim router serve` arguments for a loopback router whose state is in `stateDir`. */
export function loopbackServeArgs(stateDir: string, extra: readonly string[] = []): string[] {
  return [
    "router",
    "serve",
    "--state",
    stateDir,
    "--enroll-listen",
    "127.0.0.1:0",
    "--control-bind",
    "tcp://127.0.0.1:0",
    "--streaming-bind",
    "tcp://127.0.0.1:0",
    "--http-host",
    "127.0.0.1",
    "--http-port",
    "0",
    "--json",
    ...extra,
  ];
}
