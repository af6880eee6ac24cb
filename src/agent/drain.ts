/**
 * @module How a node stops, in one place. `serveUntilStopped` runs the
 * session until the first signal (or until the router refuses this node
 * for good: then the revocation is remembered and the error thrown).
 * `drainNode` is the order of a clean stop: tell the router (it sends no
 * new requests), let in-flight streams finish within the drain grace
 * (relay.drain: the second signal cancels them at once), release the lease
 * and close the sockets. No step waits on a fixed pause: each awaits the
 * step before it (a stream's last message is queued before its `done`
 * resolves; the close lingers for what is queued, NODE_CLOSE_LINGER_MS).
 */
import type { Logger } from "../core/log.ts";
import { saveRevocation } from "../enrollment/state.ts";
import type { NodeSession } from "./session.ts";

/** Run `session` until `signal` aborts; rethrows (after stopping it) when the session ends with an error. */
export async function serveUntilStopped(
  session: NodeSession,
  signal: AbortSignal,
  remember: { configDir: string; nodeId: string; logger: Logger },
): Promise<void> {
  let failure: unknown;
  const running = session.start().catch((err: unknown) => {
    failure = err;
  });
  const stopped = new Promise<void>((resolve) => {
    if (signal.aborted) return resolve();
    signal.addEventListener("abort", () => resolve(), { once: true });
  });
  await Promise.race([running, stopped]);
  if (failure === undefined) return;
  await session.stop();
  if (session.revokedBecause !== null) {
    // Remembered, so a restart stops at once: the router refuses this key at the handshake.
    await saveRevocation(remember.configDir, remember.nodeId, session.revokedBecause).catch((err: unknown) =>
      remember.logger.warn({ err }, "could not record the revocation in the config folder"),
    );
  }
  throw failure;
}

export interface DrainSteps {
  session: Pick<NodeSession, "drain" | "stop">;
  nodeId: string;
  graceMs: number;
  logger: Logger;
  /** Finish the in-flight streams within `graceMs` (cancel what is left). */
  finishStreams?: (graceMs: number) => Promise<void>;
}

/** The first signal's work: drain at the router, finish the streams, release the lease. */
export async function drainNode(d: DrainSteps): Promise<void> {
  d.logger.info({ nodeId: d.nodeId }, "stopping: draining and releasing the lease");
  await d.session.drain("stopping", d.graceMs);
  await d.finishStreams?.(d.graceMs);
  await d.session.stop();
}
