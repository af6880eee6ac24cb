/**
 * @module How `xim run` answers SIGTERM and SIGINT, escalating, as
 * kubelet and an operator at a terminal expect: the first drains (the
 * router is told, in-flight streams get XEROTIER_AGENT_DRAIN_GRACE_SECONDS,
 * new requests are refused), the second cancels the streams still running
 * (each ends with a `draining` error that says so) and stops now, the third
 * exits at once with ExitCode.forcedStop (the engine's process group is
 * killed on the way out by the supervisor's exit hook).
 */
import { ExitCode } from "../core/errors.ts";
import type { Logger } from "../core/log.ts";

const SIGNALS: readonly NodeJS.Signals[] = ["SIGTERM", "SIGINT"];

export class StopSignals {
  /** Aborted by the first signal: drain. */
  readonly drain: AbortSignal;
  /** Aborted by the second: cancel in-flight streams, stop now. */
  readonly now: AbortSignal;
  readonly #drain = new AbortController();
  readonly #now = new AbortController();
  readonly #log: Logger;
  readonly #exit: (code: number) => void;
  #received = 0;

  /** `exit` ends the process (the CLI passes process.exit; nothing below src/cli calls it). */
  constructor(logger: Logger, exit: (code: number) => void) {
    this.#log = logger;
    this.#exit = exit;
    this.drain = this.#drain.signal;
    this.now = this.#now.signal;
  }

  /** One SIGTERM or SIGINT arrived. */
  receive(signal: NodeJS.Signals): void {
    this.#received++;
    if (this.#received === 1) {
      this.#log.info({ signal }, "signal received: draining (send it again to stop at once)");
      this.#drain.abort();
    } else if (this.#received === 2) {
      this.#log.warn(
        { signal },
        "second signal: cancelling in-flight streams and stopping now (a third exits at once)",
      );
      this.#now.abort();
    } else {
      this.#log.error(
        { signal, exitCode: ExitCode.forcedStop },
        "third signal: exiting at once, without releasing the lease",
      );
      this.#exit(ExitCode.forcedStop);
    }
  }

  /** Listen on the process; the returned function stops listening. */
  listen(): () => void {
    const on = (signal: NodeJS.Signals) => this.receive(signal);
    for (const s of SIGNALS) process.on(s, on);
    return () => {
      for (const s of SIGNALS) process.off(s, on);
    };
  }
}
