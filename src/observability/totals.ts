/**
 * @module Running totals that the code counts (session and control-plane
 * counters) turned into increments for Prometheus counters: each call
 * returns how much a total grew since the last call for the same name.
 */

export class TotalsDelta {
  readonly #seen = new Map<string, number>();

  /** How much `total` grew since the last call for `name` (0 the first time it is 0, never negative). */
  delta(name: string, total: number): number {
    const grown = total - (this.#seen.get(name) ?? 0);
    this.#seen.set(name, total);
    return Math.max(0, grown);
  }
}
