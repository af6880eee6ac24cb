/**
 * @module The simulated engine served from this process, behind the same
 * Engine interface as a supervised child: tests and benchmarks that need an
 * engine but not a process use it. (`xim run --engine sim` runs the
 * simulator as a child through the Supervisor instead, as it runs vLLM.)
 */
import { EventEmitter } from "node:events";
import {
  type Engine,
  type EngineEvents,
  type EngineReply,
  type EngineRequest,
  type EngineState,
  type EngineStatus,
  engineNotReady,
  waitForReady,
} from "./engine.ts";
import { EngineHttpClient } from "./http-client.ts";
import { type SimulatedEngineOptions, SimulatedEngineServer } from "./simulated.ts";
import type { SseBlock } from "./sse.ts";

export class SimulatedEngine extends EventEmitter<EngineEvents> implements Engine {
  readonly kind = "sim" as const;
  readonly server: SimulatedEngineServer;
  #state: EngineState = "stopped";
  #since = Date.now();
  #client: EngineHttpClient | undefined;
  #started = false;

  constructor(options: SimulatedEngineOptions) {
    super();
    this.server = new SimulatedEngineServer(options);
  }

  get servedModelName(): string {
    return this.server.options.model;
  }

  get state(): EngineState {
    return this.#state;
  }

  get baseUrl(): string | undefined {
    return this.#client?.baseUrl;
  }

  status(): EngineStatus {
    return {
      state: this.#state,
      since: this.#since,
      baseUrl: this.baseUrl,
      pid: process.pid,
      restarts: 0,
      lastFailure: undefined,
    };
  }

  #set(state: EngineState): void {
    if (state === this.#state) return;
    this.#state = state;
    this.#since = Date.now();
    this.emit("state", this.status());
  }

  async start(): Promise<void> {
    if (this.#started) return;
    this.#started = true;
    const { baseUrl } = await this.server.listen(0, "127.0.0.1");
    this.#client = new EngineHttpClient(baseUrl);
    this.#set("loading");
    void this.server.whenReady().then(() => {
      if (this.#state === "loading") this.#set("ready");
    });
  }

  waitReady(signal?: AbortSignal): Promise<void> {
    return waitForReady(this, signal);
  }

  async stop(_graceMs: number): Promise<void> {
    if (this.#state === "stopped") return;
    this.#client?.close();
    await this.server.close();
    this.#set("stopped");
  }

  #readyClient(): EngineHttpClient {
    if (this.#state !== "ready" || !this.#client) throw engineNotReady(this.#state);
    return this.#client;
  }

  stream(request: EngineRequest, signal?: AbortSignal): AsyncGenerator<SseBlock, void, undefined> {
    return this.#readyClient().stream(request, signal);
  }

  complete(request: EngineRequest, signal?: AbortSignal): Promise<EngineReply> {
    return this.#readyClient().complete(request, signal);
  }
}
