/**
 * @module Supervision of an engine child process (vLLM, or `xim engine-sim`).
 *
 * Contract:
 * - Each run gets a fresh free loopback port (or the configured Unix
 *   socket, its stale file removed); the child runs in its own
 *   process group (vLLM starts worker processes), its stdout/stderr lines
 *   go to the logger at debug level and the last 200 are kept for reports.
 * - Ready = GET /health answers 200. Until then (connection refused or 503)
 *   it is polled every `healthIntervalMs`, with no liveness kill, for up to
 *   `startupTimeoutMs` (XEROTIER_AGENT_ENGINE_STARTUP_TIMEOUT_SECONDS).
 * - Once ready, /health is checked every `livenessIntervalMs`; after
 *   `livenessFailures` misses in a row the engine is killed and restarted.
 * - A failed start or crash is classified from the run's output
 *   (classify-failure.ts) and the engine restarted after an exponential
 *   backoff (core/backoff.ts); the attempt count resets once a run gets
 *   ready. After `maxFailures` failures within `failureWindowMs` it stops
 *   restarting and stays `failed` with the cause, exit code and last lines
 *   (a missing executable fails at once: restarting cannot help).
 * - When a run ends and `gpuProbe` says the GPU does not answer (NVML
 *   "Unknown Error" after a container update, a GPU that fell off the bus),
 *   a restart would only crash again: it waits, asking every `gpuPollMs`,
 *   until the GPU answers, then restarts at once. Those exits do not count
 *   towards `maxFailures` (the GPU failed, not the engine).
 * - stop(graceMs): SIGTERM to the group, SIGKILL after the grace. If the
 *   node process exits without stopping it, the group gets SIGKILL.
 * - Each run gets a fresh random API key, given to the engine in its
 *   environment (VLLM_API_KEY: argv is visible to every local user in ps)
 *   and sent by the node's client, so no other local user can call the
 *   engine's /v1 API past the node (its tenant salts, credits, accounting).
 */
import { type ChildProcess, spawn } from "node:child_process";
import { randomBytes } from "node:crypto";
import { EventEmitter, once } from "node:events";
import { createInterface } from "node:readline";
import type { Readable } from "node:stream";
import { type BackoffPolicy, backoffDelay, sleep as realSleep, type Sleep } from "../core/backoff.ts";
import type { Logger } from "../core/log.ts";
import { classifyFailure, failureOf } from "./classify-failure.ts";
import { type EngineEndpoint, endpointAddress, nextEndpoint } from "./endpoint.ts";
import {
  type Engine,
  type EngineEvents,
  type EngineFailure,
  type EngineKind,
  type EngineReply,
  type EngineRequest,
  type EngineState,
  type EngineStatus,
  engineNotReady,
  waitForReady,
} from "./engine.ts";
import { EngineHttpClient } from "./http-client.ts";
import type { SseBlock } from "./sse.ts";
import { type EngineCommand, redactArgs } from "./vllm-args.ts";

export const KEPT_LINES = 200;

export interface SupervisorOptions {
  kind: EngineKind;
  servedModelName: string;
  /** The command of one run, given the address and the API key chosen for it. */
  command: (endpoint: EngineEndpoint, apiKey: string) => EngineCommand | Promise<EngineCommand>;
  logger: Logger;
  startupTimeoutMs: number;
  /** Default: 1 s doubling to 60 s, equal jitter. */
  backoff?: BackoffPolicy;
  /** Failures within the window after which it stays failed. Default 5. */
  maxFailures?: number;
  /** Default 10 minutes. */
  failureWindowMs?: number;
  /** /health polling while loading. Default 1000 ms. */
  healthIntervalMs?: number;
  /** /health checks once ready. Default 10 s. */
  livenessIntervalMs?: number;
  /** Misses in a row that count as a hung engine. Default 3. */
  livenessFailures?: number;
  /** Grace of the SIGTERM when the supervisor itself kills a run (timeout, hung). Default 10 s. */
  killGraceMs?: number;
  /** The address of the next run; default: a free loopback TCP port. */
  endpoint?: () => Promise<EngineEndpoint>;
  /** Why the GPU does not answer now, or undefined when it does (or there is none). Default: never asked. */
  gpuProbe?: () => Promise<string | undefined>;
  /** How often a lost GPU is asked again. Default 5 s. */
  gpuPollMs?: number;
  sleep?: Sleep;
  now?: () => number;
  random?: () => number;
}

interface Exit {
  code: number | null;
  signal: NodeJS.Signals | null;
  error?: NodeJS.ErrnoException;
}

type RunEnd =
  | { stopped: true }
  | { stopped: false; failure: EngineFailure; wasReady: boolean; fatal: boolean };

/**
 * Signal the engine's process group (vLLM's workers with it). Only a child
 * not yet reaped may also be signalled by pid: after the leader exits its
 * pid can be reused, while the group id stays taken until the group is empty.
 */
function signalGroup(child: ChildProcess, signal: NodeJS.Signals): void {
  const pid = child.pid;
  if (pid === undefined) return;
  try {
    process.kill(-pid, signal);
  } catch {
    if (child.exitCode !== null || child.signalCode !== null) return;
    try {
      process.kill(pid, signal);
    } catch {
      // Already gone.
    }
  }
}

export class Supervisor extends EventEmitter<EngineEvents> implements Engine {
  readonly kind: EngineKind;
  readonly servedModelName: string;
  readonly #o: Required<
    Omit<SupervisorOptions, "kind" | "servedModelName" | "command" | "logger" | "gpuProbe">
  >;
  readonly #gpuProbe: SupervisorOptions["gpuProbe"];
  readonly #command: SupervisorOptions["command"];
  readonly #log: Logger;
  #state: EngineState = "stopped";
  #since: number;
  #restarts = 0;
  #lastFailure: EngineFailure | undefined;
  #child: ChildProcess | undefined;
  #client: EngineHttpClient | undefined;
  #lines: string[] = [];
  #runLines: string[] = [];
  #failures: number[] = [];
  #stopCtl = new AbortController();
  #loop: Promise<void> | undefined;
  #stopGraceMs = 0;
  readonly #onProcessExit = () => {
    if (this.#child) signalGroup(this.#child, "SIGKILL");
  };

  constructor(options: SupervisorOptions) {
    super();
    this.kind = options.kind;
    this.servedModelName = options.servedModelName;
    this.#command = options.command;
    this.#gpuProbe = options.gpuProbe;
    this.#log = options.logger.child({ component: "engine", engine: options.kind });
    this.#o = {
      startupTimeoutMs: options.startupTimeoutMs,
      backoff: options.backoff ?? { baseMs: 1000, maxMs: 60_000, jitter: "equal" },
      maxFailures: options.maxFailures ?? 5,
      failureWindowMs: options.failureWindowMs ?? 600_000,
      healthIntervalMs: options.healthIntervalMs ?? 1000,
      livenessIntervalMs: options.livenessIntervalMs ?? 10_000,
      livenessFailures: options.livenessFailures ?? 3,
      killGraceMs: options.killGraceMs ?? 10_000,
      endpoint: options.endpoint ?? (() => nextEndpoint(undefined)),
      gpuPollMs: options.gpuPollMs ?? 5000,
      sleep: options.sleep ?? realSleep,
      now: options.now ?? Date.now,
      random: options.random ?? Math.random,
    };
    this.#since = this.#o.now();
  }

  get state(): EngineState {
    return this.#state;
  }

  get baseUrl(): string | undefined {
    return this.#client?.baseUrl;
  }

  /** The last output lines of the engine across runs (at most 200), for error reports. */
  lastLines(): string[] {
    return [...this.#lines];
  }

  status(): EngineStatus {
    return {
      state: this.#state,
      since: this.#since,
      baseUrl: this.baseUrl,
      pid:
        this.#child && this.#child.exitCode === null && this.#child.signalCode === null
          ? this.#child.pid
          : undefined,
      restarts: this.#restarts,
      lastFailure: this.#lastFailure,
    };
  }

  #set(state: EngineState, force = false): void {
    if (state === this.#state && !force) return;
    this.#state = state;
    this.#since = this.#o.now();
    this.emit("state", this.status());
  }

  /**
   * Begin supervising; resolves once the first run is launched (or has
   * failed). Starting a `failed` engine tries again from a clean slate.
   */
  async start(): Promise<void> {
    if (this.#loop && this.#state !== "failed") return;
    await this.#loop;
    this.#stopCtl = new AbortController();
    this.#failures = [];
    this.#restarts = 0;
    this.#lastFailure = undefined;
    process.on("exit", this.#onProcessExit);
    this.#set("loading");
    const launched = Promise.withResolvers<void>();
    this.#loop = this.#supervise(launched.resolve).catch((err: unknown) => {
      this.#log.error({ err }, "engine supervision stopped by an internal error");
      this.#set("failed");
    });
    void this.#loop.then(() => launched.resolve());
    await launched.promise;
  }

  waitReady(signal?: AbortSignal): Promise<void> {
    return waitForReady(this, signal);
  }

  async stop(graceMs: number): Promise<void> {
    this.#stopGraceMs = graceMs;
    this.#stopCtl.abort();
    const child = this.#child;
    if (child && child.exitCode === null && child.signalCode === null) {
      this.#log.info({ pid: child.pid, graceMs }, "stopping the engine");
      await this.#kill(child, graceMs);
    }
    await this.#loop;
    this.#loop = undefined;
    this.#client?.close();
    this.#client = undefined;
    process.off("exit", this.#onProcessExit);
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

  async #supervise(launched: () => void): Promise<void> {
    const stop = this.#stopCtl.signal;
    let attempt = 0;
    while (!stop.aborted) {
      const end = await this.#runOnce(launched);
      launched();
      if (end.stopped || stop.aborted) return;
      const { failure } = end;
      this.#lastFailure = failure;
      if (end.wasReady) attempt = 0;
      if (!end.fatal && (await this.#waitForGpu(failure, stop))) {
        attempt = 0;
        continue;
      }
      const now = this.#o.now();
      this.#failures = [...this.#failures.filter((t) => t > now - this.#o.failureWindowMs), now];
      const fields = {
        cause: failure.cause,
        exitCode: failure.exitCode,
        signal: failure.signal,
        evidence: failure.evidence,
      };
      if (end.fatal || this.#failures.length >= this.#o.maxFailures) {
        this.#log.error(
          { ...fields, failures: this.#failures.length, lastLines: failure.lastLines.slice(-20) },
          `the engine failed (${failure.summary}); not restarting it. ${failure.hint}`,
        );
        this.#set("failed", true);
        return;
      }
      const delay = backoffDelay(this.#o.backoff, attempt++, this.#o.random);
      this.#restarts++;
      this.#log.warn(
        { ...fields, delayMs: delay, restarts: this.#restarts },
        `the engine exited (${failure.summary}); restarting`,
      );
      this.#set("loading", true);
      this.emit("restart", { delayMs: delay, restarts: this.#restarts, failure });
      await this.#o.sleep(delay, stop);
    }
  }

  /**
   * After a run ended: when the GPU does not answer, wait (state `failed`, with the failure) until it
   * does. Returns whether it waited, so the caller restarts at once instead of counting a crash.
   */
  async #waitForGpu(failure: EngineFailure, stop: AbortSignal): Promise<boolean> {
    const probe = this.#gpuProbe;
    if (!probe) return false;
    const ask = () => probe().catch((err: unknown) => void this.#log.warn({ err }, "asking the GPU failed"));
    let lost = await ask();
    if (lost === undefined) return false;
    this.#log.warn(
      { cause: failure.cause, exitCode: failure.exitCode, gpu: lost, pollMs: this.#o.gpuPollMs },
      "the engine exited and the GPU does not answer: waiting for the GPU before restarting the engine",
    );
    this.#set("failed", true);
    while (lost !== undefined && !stop.aborted) {
      await this.#o.sleep(this.#o.gpuPollMs, stop);
      if (!stop.aborted) lost = await ask();
    }
    if (!stop.aborted) this.#log.info("the GPU answers again: restarting the engine");
    return true;
  }

  async #runOnce(launched: () => void): Promise<RunEnd> {
    const stop = this.#stopCtl.signal;
    let endpoint: EngineEndpoint;
    try {
      endpoint = await this.#o.endpoint();
    } catch (err) {
      // A busy socket path or no free port: a failed start like any other (it may clear up).
      const failure: EngineFailure = {
        ...failureOf("port-in-use"),
        evidence: String(err instanceof Error ? err.message : err),
        exitCode: null,
        signal: null,
        lastLines: [],
        at: this.#o.now(),
      };
      return { stopped: false, failure, wasReady: false, fatal: false };
    }
    const address = endpointAddress(endpoint);
    // 256 bits, new for each run: a key read from an earlier run's environment is useless.
    const apiKey = randomBytes(32).toString("base64url");
    const command = await this.#command(endpoint, apiKey);
    for (const w of command.warnings) this.#log.warn(w);
    this.#runLines = [];
    this.#log.info({ file: command.file, args: redactArgs(command.args), address }, "starting the engine");
    const child = spawn(command.file, command.args, {
      env: command.env,
      detached: true,
      stdio: ["pipe", "pipe", "pipe"],
    });
    this.#child = child;
    const exited = new Promise<Exit>((resolve) => {
      child.once("exit", (code, signal) => resolve({ code, signal }));
      child.once("error", (error: NodeJS.ErrnoException) => {
        // After a successful spawn an error (a failed kill) is not an exit; 'exit' will come.
        if (child.pid === undefined) resolve({ code: null, signal: null, error });
        else this.#log.warn({ err: error }, "engine process error");
      });
    });
    // Nothing is written to the engine; the open pipe lets `xim engine-sim` notice a dead parent.
    child.stdin?.on("error", () => undefined);
    const outputDone = Promise.all([
      this.#capture(child.stdout, "stdout"),
      this.#capture(child.stderr, "stderr"),
    ]);
    this.#client?.close();
    const client = new EngineHttpClient(address, { apiKey });
    this.#client = client;
    if (child.pid !== undefined) {
      this.#set("loading");
      launched();
    }

    const run = new AbortController();
    const stopRun = () => run.abort();
    stop.addEventListener("abort", stopRun, { once: true });
    let exit: Exit | undefined;
    void exited.then((e) => {
      exit = e;
      run.abort();
    });
    try {
      const outcome = await this.#awaitReady(client, run.signal, () => exit !== undefined);
      let wasReady = false;
      let timedOut = false;
      let hung = false;
      if (outcome === "ready") {
        wasReady = true;
        await this.#confirmModel(client);
        this.#set("ready");
        this.#log.info({ address, pid: child.pid }, "the engine is ready");
        hung = await this.#watchLiveness(client, run.signal);
        if (hung) {
          this.#log.warn(
            { misses: this.#o.livenessFailures },
            "the engine stopped answering /health; killing it",
          );
          await this.#kill(child, this.#o.killGraceMs);
        }
      } else if (outcome === "stopped") {
        // stop() may have come before this child existed; it is stopped the same way.
        await this.#kill(child, this.#stopGraceMs);
      } else if (outcome === "timeout") {
        timedOut = true;
        this.#log.warn(
          { timeoutMs: this.#o.startupTimeoutMs },
          "the engine did not become ready in time; killing it",
        );
        await this.#kill(child, this.#o.killGraceMs);
      }
      const end = await exited;
      signalGroup(child, "SIGKILL"); // workers the engine left behind
      await Promise.race([outputDone, this.#o.sleep(1000)]);
      if (stop.aborted) return { stopped: true };
      const classification = end.error
        ? end.error.code === "ENOENT" || end.error.code === "EACCES"
          ? failureOf("engine-not-installed")
          : { ...failureOf("unknown"), evidence: String(end.error) }
        : classifyFailure(this.#runLines, { timedOut });
      if (hung && classification.cause === "unknown") {
        classification.evidence = `stopped answering GET /health (${this.#o.livenessFailures} checks in a row)`;
      }
      const failure: EngineFailure = {
        ...classification,
        exitCode: end.code,
        signal: end.signal,
        lastLines: [...this.#runLines],
        at: this.#o.now(),
      };
      if (end.error) failure.lastLines.push(`spawn ${command.file}: ${end.error.message}`);
      return { stopped: false, failure, wasReady, fatal: classification.cause === "engine-not-installed" };
    } finally {
      stop.removeEventListener("abort", stopRun);
    }
  }

  async #awaitReady(
    client: EngineHttpClient,
    signal: AbortSignal,
    hasExited: () => boolean,
  ): Promise<"ready" | "exited" | "timeout" | "stopped"> {
    const deadline = this.#o.now() + this.#o.startupTimeoutMs;
    // Poll fast at first (an engine that loads in a second is served a second later),
    // then back off to healthIntervalMs for engines that load for minutes.
    let interval = Math.min(50, this.#o.healthIntervalMs);
    for (;;) {
      if (this.#stopCtl.signal.aborted) return "stopped";
      if (hasExited()) return "exited";
      if ((await client.health()) === 200 && !hasExited()) return "ready";
      if (this.#o.now() >= deadline) return "timeout";
      await this.#o.sleep(Math.min(interval, Math.max(1, deadline - this.#o.now())), signal);
      interval = Math.min(interval * 2, this.#o.healthIntervalMs);
    }
  }

  /** Research vllm.md §7: /v1/models confirms the served name; a mismatch is logged, not fatal. */
  async #confirmModel(client: EngineHttpClient): Promise<void> {
    const models = (await client.getJson("/v1/models")) as { data?: Array<{ id?: unknown }> } | undefined;
    const ids = models?.data?.map((m) => m.id) ?? [];
    if (!ids.includes(this.servedModelName)) {
      this.#log.warn(
        { want: this.servedModelName, served: ids },
        "the engine does not list the served model name",
      );
    }
  }

  /** Resolves true when the engine stops answering /health, false when the run ends otherwise. */
  async #watchLiveness(client: EngineHttpClient, signal: AbortSignal): Promise<boolean> {
    let misses = 0;
    while (!signal.aborted) {
      await this.#o.sleep(this.#o.livenessIntervalMs, signal);
      if (signal.aborted) return false;
      const before = misses;
      misses = (await client.health()) === 200 ? 0 : misses + 1;
      if (misses !== before) this.emit("liveness", misses);
      if (misses >= this.#o.livenessFailures) return !signal.aborted;
    }
    return false;
  }

  async #kill(child: ChildProcess, graceMs: number): Promise<void> {
    if (child.exitCode !== null || child.signalCode !== null || child.pid === undefined) return;
    const gone = once(child, "exit").then(() => true);
    signalGroup(child, "SIGTERM");
    const timer = new AbortController();
    const inTime = await Promise.race([gone, this.#o.sleep(graceMs, timer.signal).then(() => false)]);
    timer.abort();
    if (!inTime) {
      this.#log.warn({ pid: child.pid, graceMs }, "the engine ignored SIGTERM; sending SIGKILL");
      signalGroup(child, "SIGKILL");
      await gone;
    }
  }

  #capture(stream: Readable | null, name: "stdout" | "stderr"): Promise<void> {
    if (!stream) return Promise.resolve();
    const lines = createInterface({ input: stream, crlfDelay: Number.POSITIVE_INFINITY });
    lines.on("line", (line) => {
      this.#lines.push(line);
      if (this.#lines.length > KEPT_LINES) this.#lines.shift();
      this.#runLines.push(line);
      if (this.#runLines.length > KEPT_LINES) this.#runLines.shift();
      this.#log.debug({ stream: name }, line);
    });
    return once(lines, "close").then(() => undefined);
  }
}
