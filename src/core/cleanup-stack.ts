/**
 * @module One list of cleanup steps for something started in parts: each
 * part registers how to undo itself right after it starts, and `close()`
 * undoes them newest first. Startup failure and shutdown run the same list,
 * so the two cannot drift apart.
 */

type Step = () => void | Promise<void>;

export class CleanupStack {
  #steps: Step[] = [];

  /** Register how to undo what was just started. */
  defer(step: Step): void {
    this.#steps.push(step);
  }

  /**
   * Run every step, newest first, once. A step that fails does not stop the
   * ones after it (the rest still hold resources); the first failure is
   * thrown when all have run.
   */
  async close(): Promise<void> {
    const steps = this.#steps.splice(0).reverse();
    let failure: { err: unknown } | undefined;
    for (const step of steps) {
      try {
        await step();
      } catch (err) {
        failure ??= { err };
      }
    }
    if (failure) throw failure.err;
  }
}
