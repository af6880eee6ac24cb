/**
 * @module The command line of a reference router for one machine: every
 * endpoint on 127.0.0.1 with a port chosen by the OS, and the bound
 * addresses printed as one JSON line (`httpUrl`, `enrollUrl`, ...). The demo,
 * the benchmarks and the end-to-end tests start their routers with it.
 */

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
