/**
 * @module The engine as the node sees it: a process (or in-process server)
 * that serves the OpenAI API on loopback, with a lifecycle
 * (loading -> ready, failed, stopped; a `state` event on each change) and
 * two ways to run a completion: `stream` yields the raw `data:` payloads of
 * the engine's SSE response (Buffers, ending with `[DONE]`) for the relay to
 * forward unchanged; `complete` returns a non-streaming JSON body. Aborting
 * the signal closes the HTTP connection, which is how vLLM aborts a request.
 * Implementations: Supervisor (vLLM or `xim engine-sim` as a child process)
 * and SimulatedEngine (the simulated server in this process, for tests).
 */
import type { EventEmitter } from "node:events";
import { XimError } from "../core/errors.ts";
import type { FailureClassification } from "./classify-failure.ts";
import type { SseBlock } from "./sse.ts";

export type EngineState = "loading" | "ready" | "failed" | "stopped";
export type EngineKind = "vllm" | "sim";
export type CompletionPath = "/v1/chat/completions" | "/v1/completions";

export interface EngineRequest {
  path: CompletionPath;
  /** An OpenAI request body: an object (serialised here) or JSON bytes sent as they are, whole or in consecutive parts. */
  body: Record<string, unknown> | Uint8Array | readonly Uint8Array[];
  /** Sent as X-Request-Id; vLLM uses it as the base of its request id. */
  requestId?: string;
}

export interface EngineReply {
  status: number;
  contentType: string | undefined;
  body: Buffer;
}

/** An engine exit or failed start, as reported to the router. */
export interface EngineFailure extends FailureClassification {
  exitCode: number | null;
  signal: string | null;
  /** The engine's last output lines of that run (at most 200). */
  lastLines: string[];
  /** Epoch ms. */
  at: number;
}

export interface EngineStatus {
  state: EngineState;
  /** Epoch ms of the last state change. */
  since: number;
  /** http://127.0.0.1:<port> while a run is up. */
  baseUrl: string | undefined;
  pid: number | undefined;
  /** Restarts after crashes or failed starts since start(). */
  restarts: number;
  /** The latest failure; with state `failed`, the one that made it give up. */
  lastFailure: EngineFailure | undefined;
}

export interface EngineRestart {
  /** Backoff before the next start. */
  delayMs: number;
  /** Restarts so far, this one included. */
  restarts: number;
  failure: EngineFailure;
}

export interface EngineEvents {
  state: [EngineStatus];
  /** A supervised engine failed and will be started again after `delayMs`. */
  restart: [EngineRestart];
  /** A ready engine's /health checks missed in a row; 0 again once it answers (engine_unresponsive). */
  liveness: [misses: number];
}

export interface Engine extends EventEmitter<EngineEvents> {
  readonly kind: EngineKind;
  /** The model name requests must carry (vLLM --served-model-name). */
  readonly servedModelName: string;
  readonly state: EngineState;
  readonly baseUrl: string | undefined;
  status(): EngineStatus;
  /** Begin loading; resolves once the engine is launched (not ready: see waitReady). */
  start(): Promise<void>;
  /** Resolves when ready; rejects with XIM_ENGINE_FAILED / XIM_ENGINE_STOPPED, or the signal's reason. */
  waitReady(signal?: AbortSignal): Promise<void>;
  /** SIGTERM (or close), then SIGKILL after graceMs; resolves when the engine is gone. */
  stop(graceMs: number): Promise<void>;
  /**
   * A streaming completion as blocks of whole SSE events, as the engine wrote
   * them (one per socket read), `data: [DONE]` last; `ssePayloads` gives the
   * events one by one. Throws EngineHttpError on a non-2xx answer.
   */
  stream(request: EngineRequest, signal?: AbortSignal): AsyncGenerator<SseBlock, void, undefined>;
  /** A non-streaming completion. Throws EngineHttpError on a non-2xx answer. */
  complete(request: EngineRequest, signal?: AbortSignal): Promise<EngineReply>;
}

/** The engine answered with an error status; `body` is its OpenAI error JSON, to forward as is. */
export class EngineHttpError extends XimError {
  readonly status: number;
  readonly body: Buffer;

  constructor(status: number, body: Buffer) {
    super("XIM_ENGINE_HTTP_ERROR", `the engine answered HTTP ${status}: ${body.toString("utf8", 0, 300)}`);
    this.status = status;
    this.body = body;
  }
}

export function engineNotReady(state: EngineState): XimError {
  return new XimError("XIM_ENGINE_NOT_READY", `the engine is ${state}, not ready for requests`, {
    hint: "Requests go only to a ready engine; wait for the `ready` state.",
  });
}

/** Resolve when `engine` is ready; the shared waitReady of the implementations. */
export function waitForReady(engine: Engine, signal?: AbortSignal): Promise<void> {
  return new Promise((resolve, reject) => {
    const check = (status: EngineStatus): boolean => {
      if (status.state === "ready") {
        resolve();
        return true;
      }
      if (status.state === "failed") {
        const f = status.lastFailure;
        reject(
          new XimError(
            "XIM_ENGINE_FAILED",
            `the engine failed${f ? `: ${f.summary}${f.evidence ? ` (${f.evidence.trim()})` : ""}` : ""}`,
            { hint: f?.hint },
          ),
        );
        return true;
      }
      if (status.state === "stopped") {
        reject(new XimError("XIM_ENGINE_STOPPED", "the engine was stopped before it became ready"));
        return true;
      }
      return false;
    };
    if (check(engine.status())) return;
    const onState = (status: EngineStatus) => {
      if (check(status)) cleanup();
    };
    const onAbort = () => {
      cleanup();
      reject(signal?.reason);
    };
    const cleanup = () => {
      engine.off("state", onState);
      signal?.removeEventListener("abort", onAbort);
    };
    if (signal?.aborted) return onAbort();
    engine.on("state", onState);
    signal?.addEventListener("abort", onAbort, { once: true });
  });
}
