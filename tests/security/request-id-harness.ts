/**
 * Shared parts of the request-id attack tests: a simulated engine whose
 * requests wait at a gate the test opens (so "both requests in flight at
 * once" is a state the test waits for, never a matter of timing), a stack
 * with one node running it, and HTTP clients for the scenarios: a chat
 * request read to the end, and one that stops after its headers
 * (`Expect: 100-continue`) until the test sends its body.
 */
import http from "node:http";
import type { EngineReply, EngineRequest } from "../../src/engine/engine.ts";
import { SimulatedEngine } from "../../src/engine/simulated-engine.ts";
import type { SseBlock } from "../../src/engine/sse.ts";
import { Stack, type StackNode } from "../helpers/stack.ts";
import { waitFor } from "../router/harness.ts";

/** A simulated engine that, while holding, parks every request until the test releases it. */
export class GatedEngine extends SimulatedEngine {
  #holding = false;
  #held: Array<() => void> = [];
  /** The X-Request-Id of every request that reached the engine, in order. */
  readonly arrived: string[] = [];

  /** Requests waiting at the gate now. */
  get held(): number {
    return this.#held.length;
  }

  /** From now on, park each new request. */
  hold(): void {
    this.#holding = true;
  }

  /** Let the parked requests go on; later ones are still parked. */
  releaseHeld(): void {
    for (const go of this.#held.splice(0)) go();
  }

  /** Let everything through, parked or not. */
  open(): void {
    this.#holding = false;
    this.releaseHeld();
  }

  async #gate(request: EngineRequest, signal?: AbortSignal): Promise<void> {
    this.arrived.push(request.requestId ?? "");
    if (!this.#holding) return;
    await new Promise<void>((resolve, reject) => {
      const go = () => {
        signal?.removeEventListener("abort", gone);
        resolve();
      };
      const gone = () => {
        this.#held.splice(this.#held.indexOf(go), 1);
        reject(signal?.reason);
      };
      this.#held.push(go);
      signal?.addEventListener("abort", gone, { once: true });
    });
  }

  override async *stream(
    request: EngineRequest,
    signal?: AbortSignal,
  ): AsyncGenerator<SseBlock, void, undefined> {
    await this.#gate(request, signal);
    yield* super.stream(request, signal);
  }

  override async complete(request: EngineRequest, signal?: AbortSignal): Promise<EngineReply> {
    await this.#gate(request, signal);
    return super.complete(request, signal);
  }
}

export interface GatedStack {
  stack: Stack;
  node: StackNode;
  engine: GatedEngine;
}

/** A router and one node of project `default` serving `sim-model` through a GatedEngine. */
export async function startGatedStack(maxConcurrent: number): Promise<GatedStack> {
  const stack = await Stack.start();
  try {
    const engine = new GatedEngine({ model: "sim-model", loadTimeMs: 0, ttftMs: 0, itlMs: 0 });
    const node = await stack.addNode({
      engine,
      env: { XEROTIER_AGENT_MAX_CONCURRENT: String(maxConcurrent) },
    });
    await waitFor(() => stack.service.controlPlane.lease(node.nodeId)?.state === "ready", {
      timeoutMs: 20_000,
      what: "the gated node to be ready",
    });
    return { stack, node, engine };
  } catch (err) {
    await stack.close();
    throw err;
  }
}

export function chatRequest(prompt: string): Record<string, unknown> {
  return { model: "sim-model", messages: [{ role: "user", content: prompt }] };
}

/** What the simulated engine answers to `prompt` (its text depends on the prompt only). */
export async function expectedContent(engine: GatedEngine, prompt: string): Promise<string> {
  const reply = await engine.complete({ path: "/v1/chat/completions", body: chatRequest(prompt) });
  return contentOf(reply.body);
}

/** The assistant's text of a non-streaming chat completion, or a description of what came instead. */
export function contentOf(body: Buffer): string {
  try {
    const parsed = JSON.parse(body.toString("utf8")) as {
      choices?: Array<{ message?: { content?: unknown } }>;
    };
    const content = parsed.choices?.[0]?.message?.content;
    return typeof content === "string" ? content : `(no content: ${body.toString("utf8", 0, 200)})`;
  } catch {
    return `(not JSON: ${body.toString("utf8", 0, 200)})`;
  }
}

export interface Answer {
  status: number;
  requestIdHeader: string | undefined;
  body: Buffer;
}

/**
 * A POST whose headers leave first with `Expect: 100-continue`: the router's
 * handler has run up to reading the body when `continued` resolves; the
 * body leaves on `send()`. `answer` rejects after `timeoutMs` (a client
 * whose stream was taken over would otherwise wait for ever).
 */
export function heldRequest(
  url: string,
  headers: Record<string, string>,
  body: unknown,
  timeoutMs = 15_000,
  expectContinue = true,
): { continued: Promise<void>; send: () => void; answer: Promise<Answer> } {
  const u = new URL(url);
  const req = http.request({
    host: u.hostname,
    port: u.port,
    path: "/v1/chat/completions",
    method: "POST",
    headers: {
      "content-type": "application/json",
      ...(expectContinue ? { expect: "100-continue" } : {}),
      ...headers,
    },
  });
  const continued = new Promise<void>((resolve, reject) => {
    req.once("continue", () => resolve());
    req.once("error", reject);
  });
  const answer = new Promise<Answer>((resolve, reject) => {
    const timer = setTimeout(() => {
      req.destroy();
      reject(new Error(`no complete answer within ${timeoutMs} ms`));
    }, timeoutMs);
    req.once("error", (err) => {
      clearTimeout(timer);
      reject(err);
    });
    req.once("response", (res) => {
      const parts: Buffer[] = [];
      res.on("data", (d: Buffer) => parts.push(d));
      res.once("error", (err) => {
        clearTimeout(timer);
        reject(err);
      });
      res.once("end", () => {
        clearTimeout(timer);
        const id = res.headers["x-request-id"];
        resolve({
          status: res.statusCode ?? 0,
          requestIdHeader: typeof id === "string" ? id : undefined,
          body: Buffer.concat(parts),
        });
      });
    });
  });
  // A test that fails before awaiting these must not leave a rejection unhandled.
  continued.catch(() => undefined);
  answer.catch(() => undefined);
  return { continued, send: () => req.end(JSON.stringify(body)), answer };
}

/** A POST sent whole at once. */
export function sendRequest(
  url: string,
  headers: Record<string, string>,
  body: unknown,
  timeoutMs = 15_000,
): Promise<Answer> {
  const r = heldRequest(url, headers, body, timeoutMs, false);
  r.send();
  return r.answer;
}

/** The answer's text, or why there is none (so a failed assertion shows what the client got). */
export async function settledContent(answer: Promise<Answer>): Promise<string> {
  try {
    const a = await answer;
    return a.status === 200 ? contentOf(a.body) : `(HTTP ${a.status}: ${a.body.toString("utf8", 0, 200)})`;
  } catch (err) {
    return `(${(err as Error).message})`;
  }
}
