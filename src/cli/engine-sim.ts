/**
 * @module `xim engine-sim` (hidden): the simulated OpenAI-compatible engine,
 * with the contract of `vllm serve`. `xim run --engine sim` starts it as a
 * child; tests, the demo and benchmarks run it directly.
 */
import { UsageError } from "../core/errors.ts";
import { runSimProcess } from "../engine/sim-process.ts";
import { START_FAILURE_KINDS, type StartFailureKind } from "../engine/vllm-messages.ts";
import type { CommandSpec } from "./command.ts";

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

export const engineSimCommand: CommandSpec = {
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
  options: [
    { flags: "--host <host>", description: "address to bind", default: "127.0.0.1" },
    {
      flags: "--port <port>",
      description: "port to bind; 0 lets the OS choose",
      default: 0,
      parse: nonNegativeInt("--port"),
    },
    {
      flags: "--uds <path>",
      description: "serve on this Unix socket instead of --host/--port (as vLLM's --uds)",
    },
    { flags: "--model <name>", description: "served model name", default: "sim-model" },
    {
      flags: "--root <path>",
      description: "model path reported as `root` by /v1/models (default: the name)",
    },
    {
      flags: "--load-time-ms <ms>",
      description: "time until ready",
      default: 0,
      parse: nonNegativeInt("--load-time-ms"),
    },
    {
      flags: "--ttft-ms <ms>",
      description: "time to first token",
      default: 0,
      parse: nonNegativeInt("--ttft-ms"),
    },
    {
      flags: "--itl-ms <ms>",
      description: "inter-token latency; 0 = as fast as the client reads",
      default: 0,
      parse: nonNegativeInt("--itl-ms"),
    },
    {
      flags: "--output-tokens <n>",
      description: "tokens per completion (max_tokens can lower it)",
      default: 16,
      parse: positiveInt("--output-tokens"),
    },
    {
      flags: "--max-num-seqs <n>",
      description: "requests generated at once (vLLM's --max-num-seqs); more wait in a queue",
      parse: positiveInt("--max-num-seqs"),
    },
    {
      flags: "--max-model-len <n>",
      description: "context length reported by /v1/models",
      default: 4096,
      parse: positiveInt("--max-model-len"),
    },
    {
      flags: "--created <seconds>",
      description: "fixed `created` of every response (default: start time)",
      parse: nonNegativeInt("--created"),
    },
    {
      flags: "--fail-at-start <kind>",
      description: `fail the start as vLLM does, printing its real error text after the load time: ${START_FAILURE_KINDS.join(", ")}`,
      parse: failureKind,
    },
    {
      flags: "--exit-after-ms <ms>",
      description: "crash (exit 1) this long after becoming ready",
      parse: nonNegativeInt("--exit-after-ms"),
    },
    {
      flags: "--unhealthy-after-ms <ms>",
      description: "answer 503 on /health this long after becoming ready (a dead engine that still listens)",
      parse: nonNegativeInt("--unhealthy-after-ms"),
    },
    {
      flags: "--api-key <key>",
      description:
        "answer /v1 paths only with `Authorization: Bearer <key>` (401 otherwise), as vLLM's; default: the VLLM_API_KEY environment variable, else no key",
    },
    {
      flags: "--loading-503",
      description: "while loading, answer 503 on /health and API paths instead of resetting connections",
    },
    {
      flags: "--fail-mid-stream-after <tokens>",
      description:
        "fail every request after this many tokens as vLLM does (a stream ends with its error event and [DONE]; otherwise 500)",
      parse: nonNegativeInt("--fail-mid-stream-after"),
    },
    {
      flags: "--stamp-chunks",
      description:
        "not vLLM's: put the host's monotonic clock (xim_sent_mono_ms) in each streamed event, for the benchmark's chunk lag",
    },
    {
      flags: "--exit-on-stdin-close",
      description: "exit when stdin closes (the supervisor's pipe: dies with its parent)",
    },
  ],
  examples: [
    "xim engine-sim --port 8000 --model demo --ttft-ms 50 --itl-ms 10",
    "xim engine-sim --port 0 --load-time-ms 2000 --fail-at-start oom",
    "xim engine-sim --port 0 --output-tokens 50 --fail-mid-stream-after 10",
  ],
  async run(ctx) {
    const o = ctx.options;
    const shutdown = Promise.withResolvers<void>();
    const stop = () => shutdown.resolve();
    process.once("SIGTERM", stop);
    process.once("SIGINT", stop);
    if (o.exitOnStdinClose) {
      process.stdin.once("end", stop);
      process.stdin.once("close", stop);
      process.stdin.resume();
    }
    try {
      return await runSimProcess(
        {
          host: o.host as string,
          port: o.port as number,
          uds: o.uds as string | undefined,
          model: o.model as string,
          root: o.root as string | undefined,
          loadTimeMs: o.loadTimeMs as number,
          ttftMs: o.ttftMs as number,
          itlMs: o.itlMs as number,
          outputTokens: o.outputTokens as number,
          maxModelLen: o.maxModelLen as number,
          maxNumSeqs: o.maxNumSeqs as number | undefined,
          created: o.created as number | undefined,
          failAtStart: o.failAtStart as StartFailureKind | undefined,
          exitAfterMs: o.exitAfterMs as number | undefined,
          unhealthyAfterMs: o.unhealthyAfterMs as number | undefined,
          apiKey: (o.apiKey as string | undefined) || ctx.io.env.VLLM_API_KEY || undefined,
          loading503: o.loading503 === true,
          failMidStreamAfter: o.failMidStreamAfter as number | undefined,
          stampChunks: o.stampChunks === true,
        },
        ctx.io,
        shutdown.promise,
      );
    } finally {
      process.off("SIGTERM", stop);
      process.off("SIGINT", stop);
      if (o.exitOnStdinClose) process.stdin.destroy();
    }
  },
};
