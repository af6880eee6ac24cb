/**
 * @module `xim engine-sim` (hidden): the simulated OpenAI-compatible engine,
 * with the contract of `vllm serve`. `xim run --engine sim` starts it as a
 * child; tests, the demo and benchmarks run it directly.
 */
import { UsageError } from "../core/errors.ts";
import { runSimProcess } from "../engine/sim-process.ts";
import { START_FAILURE_KINDS, type StartFailureKind } from "../engine/vllm-messages.ts";
import { defineCommand } from "./command.ts";
import { switchOption, textOption, valueOption } from "./options.ts";

function nonNegativeInt(name: string) {
  return (value: string): number => {
    if (!/^\d+$/.test(value)) throw new UsageError(`${name} expects a whole number, got '${value}'`);
    return Number(value);
  };
}

function positiveInt(name: string) {
  return (value: string): number => {
    const n = nonNegativeInt(name)(value);
    if (n < 1) throw new UsageError(`${name} expects a number of at least 1, got '${value}'`);
    return n;
  };
}

function failureKind(value: string): StartFailureKind {
  if (!(START_FAILURE_KINDS as string[]).includes(value)) {
    throw new UsageError(`--fail-at-start expects one of ${START_FAILURE_KINDS.join(", ")}, got '${value}'`);
  }
  return value as StartFailureKind;
}

export const engineSimCommand = defineCommand({
  name: "engine-sim",
  summary: "Run the simulated OpenAI-compatible engine (same contract as `vllm serve`)",
  description: [
    "Listens at once and prints one JSON line on stdout with the bound port",
    '({"event":"listening","host":...,"port":...,"baseUrl":...}). Until --load-time-ms has',
    "passed it resets every connection (vLLM refuses them while loading; with --loading-503",
    "it answers 503 instead), then /health answers 200. Serves /v1/models, /v1/completions and",
    "/v1/chat/completions (stream or not), GET /metrics (Prometheus) and GET /debug/state",
    "(counters and the cache_salt values received). Output text is deterministic.",
    "Stops on SIGTERM/SIGINT (exit 0).",
  ].join("\n"),
  options: {
    host: textOption("--host <host>", "address to bind", "127.0.0.1"),
    port: valueOption("--port <port>", "port to bind; 0 lets the OS choose", nonNegativeInt("--port"), 0),
    uds: textOption("--uds <path>", "serve on this Unix socket instead of --host/--port (as vLLM's --uds)"),
    model: textOption("--model <name>", "served model name", "sim-model"),
    root: textOption("--root <path>", "model path reported as `root` by /v1/models (default: the name)"),
    loadTimeMs: valueOption("--load-time-ms <ms>", "time until ready", nonNegativeInt("--load-time-ms"), 0),
    ttftMs: valueOption("--ttft-ms <ms>", "time to first token", nonNegativeInt("--ttft-ms"), 0),
    itlMs: valueOption(
      "--itl-ms <ms>",
      "inter-token latency; 0 = as fast as the client reads",
      nonNegativeInt("--itl-ms"),
      0,
    ),
    outputTokens: valueOption(
      "--output-tokens <n>",
      "tokens per completion (max_tokens can lower it)",
      positiveInt("--output-tokens"),
      16,
    ),
    maxNumSeqs: valueOption(
      "--max-num-seqs <n>",
      "requests generated at once (vLLM's --max-num-seqs); more wait in a queue",
      positiveInt("--max-num-seqs"),
    ),
    maxModelLen: valueOption(
      "--max-model-len <n>",
      "context length reported by /v1/models",
      positiveInt("--max-model-len"),
      4096,
    ),
    created: valueOption(
      "--created <seconds>",
      "fixed `created` of every response (default: start time)",
      nonNegativeInt("--created"),
    ),
    failAtStart: valueOption(
      "--fail-at-start <kind>",
      `fail the start as vLLM does, printing its real error text after the load time: ${START_FAILURE_KINDS.join(", ")}`,
      failureKind,
    ),
    exitAfterMs: valueOption(
      "--exit-after-ms <ms>",
      "crash (exit 1) this long after becoming ready",
      nonNegativeInt("--exit-after-ms"),
    ),
    unhealthyAfterMs: valueOption(
      "--unhealthy-after-ms <ms>",
      "answer 503 on /health this long after becoming ready (a dead engine that still listens)",
      nonNegativeInt("--unhealthy-after-ms"),
    ),
    apiKey: textOption(
      "--api-key <key>",
      "answer /v1 paths only with `Authorization: Bearer <key>` (401 otherwise), as vLLM's; default: the VLLM_API_KEY environment variable, else no key",
    ),
    loading503: switchOption(
      "--loading-503",
      "while loading, answer 503 on /health and API paths instead of resetting connections",
    ),
    failMidStreamAfter: valueOption(
      "--fail-mid-stream-after <tokens>",
      "fail every request after this many tokens as vLLM does (a stream ends with its error event and [DONE]; otherwise 500)",
      nonNegativeInt("--fail-mid-stream-after"),
    ),
    stampChunks: switchOption(
      "--stamp-chunks",
      "not vLLM's: put the host's monotonic clock (xim_sent_mono_ms) in each streamed event, for the benchmark's chunk lag",
    ),
    exitOnStdinClose: switchOption(
      "--exit-on-stdin-close",
      "exit when stdin closes (the supervisor's pipe: dies with its parent)",
    ),
  },
  examples: [
    "xim engine-sim --port 8000 --model demo --ttft-ms 50 --itl-ms 10",
    "xim engine-sim --port 0 --load-time-ms 2000 --fail-at-start oom",
    "xim engine-sim --port 0 --output-tokens 50 --fail-mid-stream-after 10",
  ],
  async run(ctx) {
    const { exitOnStdinClose, apiKey, ...simOptions } = ctx.options;
    const shutdown = Promise.withResolvers<void>();
    const stop = () => shutdown.resolve();
    process.once("SIGTERM", stop);
    process.once("SIGINT", stop);
    if (exitOnStdinClose) {
      process.stdin.once("end", stop);
      process.stdin.once("close", stop);
      process.stdin.resume();
    }
    try {
      return await runSimProcess(
        {
          ...simOptions,
          apiKey: apiKey || ctx.io.env.VLLM_API_KEY || undefined,
          loading503: simOptions.loading503 === true,
          stampChunks: simOptions.stampChunks === true,
        },
        ctx.io,
        shutdown.promise,
      );
    } finally {
      process.off("SIGTERM", stop);
      process.off("SIGINT", stop);
      if (exitOnStdinClose) process.stdin.destroy();
    }
  },
});
