/**
 * @module What one node's stream may make the router hold, checked where
 * the node's messages arrive (dispatch.ts). A node is trusted to serve
 * inference, not with the router's memory: its credit window must lie
 * between MIN_STREAM_WINDOW_BYTES and the window the router asked for
 * (flow control cannot be switched off by the node), it may not send
 * beyond the credit it was given, and an SSE event it leaves unfinished
 * is held up to `maxEventBytes`. A stream that breaks a limit is failed
 * alone; the node's other streams go on.
 */
import { ExitCode, XimError } from "../core/errors.ts";

/** The smallest per-stream window (the node's FLOW_CONTROL_WINDOW_BYTES has the same minimum). */
export const MIN_STREAM_WINDOW_BYTES = 1024;

/** The largest window the router may ask for (`--flow-window-bytes`): per stream, held in the router's memory. */
export const MAX_STREAM_WINDOW_BYTES = 16 * 1024 * 1024;

/**
 * The longest unfinished SSE event the router holds for a stream. vLLM's
 * largest ordinary event is one chunk of a completion with logprobs: with
 * top_logprobs at its maximum of 20 a token costs about 2-3 KB of JSON, so
 * 1 MiB holds some 400 tokens in one event (several engine steps coalesced
 * by --stream-interval) with wide margin. Only a completions request with
 * `echo` and logprobs over a long prompt sends more (its first event
 * carries the prompt's logprobs): raise `--flow-max-event-bytes` for that.
 */
export const DEFAULT_MAX_EVENT_BYTES = 1024 * 1024;
export const MAX_EVENT_BYTES_LIMIT = 64 * 1024 * 1024;

/**
 * Why a stream's announced window is refused, or null when it is accepted.
 * `requested`: the window the router put in `dispatch` (0: the router's
 * flow control is off and any window is ignored).
 */
export function streamWindowProblem(announced: number | undefined, requested: number): string | null {
  if (requested === 0 || announced === undefined) return null;
  if (announced === 0) return "the node switched flow control off (window 0) for the stream";
  if (announced < MIN_STREAM_WINDOW_BYTES || announced > requested)
    return `the node announced a credit window of ${announced} bytes; accepted: ${MIN_STREAM_WINDOW_BYTES} to ${requested} (the window the router asked for)`;
  return null;
}

/**
 * Why a node's registration is refused for its flow control, or null. A
 * router with flow control on needs every node to wait for credit.
 */
export function registerWindowProblem(nodeWindow: number, routerWindow: number): string | null {
  if (routerWindow === 0 || nodeWindow >= MIN_STREAM_WINDOW_BYTES) return null;
  return nodeWindow === 0
    ? "the node has flow control off (XEROTIER_AGENT_FLOW_CONTROL_ENABLED=false) and this router requires it"
    : `the node's credit window is ${nodeWindow} bytes; this router accepts ${MIN_STREAM_WINDOW_BYTES} bytes or more`;
}

/** Check the router's own flow settings (`xim router serve --flow-*`). */
export function checkRouterFlow(flow: { windowBytes: number; maxEventBytes?: number }): void {
  const w = flow.windowBytes;
  if (!Number.isInteger(w) || (w !== 0 && (w < MIN_STREAM_WINDOW_BYTES || w > MAX_STREAM_WINDOW_BYTES)))
    throw new XimError(
      "XIM_FLOW_WINDOW_INVALID",
      `flow window ${w} bytes is out of range; accepted: 0 (flow control off) or ${MIN_STREAM_WINDOW_BYTES} to ${MAX_STREAM_WINDOW_BYTES}`,
      { hint: "set --flow-window-bytes within the range (default 65536)", exitCode: ExitCode.usage },
    );
  const e = flow.maxEventBytes;
  if (e !== undefined && (!Number.isInteger(e) || e < MIN_STREAM_WINDOW_BYTES || e > MAX_EVENT_BYTES_LIMIT))
    throw new XimError(
      "XIM_FLOW_EVENT_LIMIT_INVALID",
      `largest SSE event ${e} bytes is out of range; accepted: ${MIN_STREAM_WINDOW_BYTES} to ${MAX_EVENT_BYTES_LIMIT}`,
      {
        hint: `set --flow-max-event-bytes within the range (default ${DEFAULT_MAX_EVENT_BYTES})`,
        exitCode: ExitCode.usage,
      },
    );
}
