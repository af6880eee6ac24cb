/**
 * @module The V8 options every xim process runs with: the single
 * executable's `execArgv` (scripts/build.ts) and the benchmark's processes
 * run from source (bench/lib/procs.ts), so what is measured is what ships.
 */

/**
 * Semi-spaces capped at 4 MiB. V8 grows the young generation for the
 * allocation rate of a burst (a node at 1024 streams committed 64 MiB of it)
 * and keeps it; capped, the node's peak RSS at 1024 streams was 40-60 MiB
 * lower with no CPU per chunk difference beyond noise (bench/README.md,
 * "Fifth session"). An old-generation limit would cut more but turns a wrong
 * budget into an out-of-memory crash, so none is set.
 */
export const V8_FLAGS: readonly string[] = ["--max-semi-space-size=4"];
