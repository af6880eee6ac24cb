/**
 * @module The simulated engine as a process (`xim engine-sim`): what it
 * prints and when it exits, so a supervisor sees what it sees with vLLM.
 * stdout carries one JSON line once the port is bound
 * ({"event":"listening","host","port","baseUrl"}, or "socketPath" with --uds); stderr carries log lines
 * in vLLM's wording ("Application startup complete."), or, with
 * failAtStart, the real vLLM error text of that failure before exit 1.
 */
import { sleep as realSleep, type Sleep } from "../core/backoff.ts";
import { type SimulatedEngineOptions, SimulatedEngineServer } from "./simulated.ts";
import { START_FAILURES, type StartFailureKind, VLLM_MESSAGES } from "./vllm-messages.ts";

export interface SimProcessOptions extends SimulatedEngineOptions {
  host: string;
  port: number;
  /** Serve on this Unix socket instead of host:port (vLLM's --uds). */
  uds?: string;
  /** Fail the start the way vLLM does, after the load time. */
  failAtStart?: StartFailureKind;
  /** Crash (exit 1) this long after becoming ready. */
  exitAfterMs?: number;
}

export interface SimProcessIo {
  stdout: (text: string) => void;
  stderr: (text: string) => void;
}

/** Runs until `shutdown` resolves (exit 0), a simulated crash (1) or failed start (1). */
export async function runSimProcess(
  options: SimProcessOptions,
  io: SimProcessIo,
  shutdown: Promise<unknown>,
  sleep: Sleep = realSleep,
): Promise<number> {
  io.stderr(`INFO xim engine-sim: simulated vLLM API server, model ${options.model}\n`);
  if (options.failAtStart) {
    const cancel = new AbortController();
    const stopped = await Promise.race([
      shutdown.then(() => true),
      sleep(options.loadTimeMs ?? 0, cancel.signal).then(() => false),
    ]);
    cancel.abort();
    if (stopped) return 0;
    for (const key of START_FAILURES[options.failAtStart]) io.stderr(VLLM_MESSAGES[key]);
    return 1;
  }
  const server = new SimulatedEngineServer(options);
  const address = await server.listen(options.uds ?? options.port, options.host);
  io.stdout(`${JSON.stringify({ event: "listening", ...address })}\n`);
  io.stderr(`INFO Starting vLLM API server 0 on ${address.baseUrl}\n`);
  const crashed = Promise.withResolvers<number>();
  let crashTimer: NodeJS.Timeout | undefined;
  void server.whenReady().then(() => {
    io.stderr("INFO:     Application startup complete.\n");
    if (options.exitAfterMs !== undefined) {
      crashTimer = setTimeout(() => {
        io.stderr("ERROR xim engine-sim: simulated crash (--exit-after-ms)\n");
        crashed.resolve(1);
      }, options.exitAfterMs);
    }
  });
  const code = await Promise.race([shutdown.then(() => 0), crashed.promise]);
  clearTimeout(crashTimer);
  await server.close();
  if (code === 0) io.stderr("INFO xim engine-sim: shut down\n");
  return code;
}
