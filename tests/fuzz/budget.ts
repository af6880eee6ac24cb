/**
 * How long each time-bounded fuzz property runs, and with which seed.
 * `npm test` gives each a few seconds; `npm run fuzz -- --seconds N`
 * (scripts/fuzz.ts) sets XIM_FUZZ_SECONDS for as long as wanted. The seed
 * is fixed (XIM_FUZZ_SEED overrides it) so that a failure found in CI
 * replays exactly: it is printed with the failure.
 */
import fc from "fast-check";

function fromEnv(name: string, fallback: number): number {
  const text = process.env[name];
  if (text === undefined || text === "") return fallback;
  const n = Number(text);
  if (!Number.isFinite(n) || n <= 0) throw new Error(`${name} must be a positive number, got '${text}'`);
  return n;
}

/** Seconds per property: XIM_FUZZ_SECONDS, else 3 (a few seconds each within `npm test`). */
export const FUZZ_SECONDS = fromEnv("XIM_FUZZ_SECONDS", 3);
/** The seed of every property: XIM_FUZZ_SEED, else a fixed one. */
export const FUZZ_SEED = Math.trunc(fromEnv("XIM_FUZZ_SEED", 1414));

/**
 * fast-check parameters: as many runs as fit in FUZZ_SECONDS, the fixed
 * seed, and no shrinking against real processes (it would re-run a slow
 * property many times; the seed and path replay the failing input).
 */
export function budget(): fc.Parameters<unknown> {
  return {
    seed: FUZZ_SEED,
    numRuns: Number.MAX_SAFE_INTEGER,
    interruptAfterTimeLimit: FUZZ_SECONDS * 1000,
    markInterruptAsFailure: false,
    endOnFailure: true,
  };
}

/** Run a property for the budget; a failure says how to replay it. */
export async function fuzz<T>(property: fc.IAsyncProperty<T> | fc.IProperty<T>): Promise<void> {
  try {
    await fc.assert(property as fc.IAsyncProperty<T>, budget() as fc.Parameters<T>);
  } catch (err) {
    (err as Error).message =
      `fuzz failure with seed ${FUZZ_SEED} (replay: XIM_FUZZ_SEED=${FUZZ_SEED} npm run fuzz -- --seconds ${FUZZ_SECONDS})\n${(err as Error).message}`;
    throw err;
  }
}

/** A test timeout for `properties` budgets plus `setupMs` of start-up, with room for busy CI cores. */
export function fuzzTimeoutMs(properties: number, setupMs = 120_000): number {
  return properties * FUZZ_SECONDS * 1000 * 3 + setupMs;
}
