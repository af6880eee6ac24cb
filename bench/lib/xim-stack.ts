/**
 * @module A router and one node with the simulated engine, started as real
 * processes in a temporary folder, for the benchmark: the same path a user's
 * request takes (HTTP -> router -> ZeroMQ -> node -> engine and back).
 */
import { randomBytes } from "node:crypto";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { loopbackServeArgs, sandboxEnv } from "../../scripts/lib/loopback-router.ts";
import { childrenOf, type Pinning, pinProcess } from "./pin.ts";
import { jsonLine, type Proc, runXim, startXim, until } from "./procs.ts";

export interface SimTiming {
  ttftMs: number;
  itlMs: number;
  outputTokens: number;
}

export interface XimStack {
  httpUrl: string;
  apiKey: string;
  model: string;
  router: Proc;
  node: Proc;
  stop: () => Promise<void>;
}

export async function startXimStack(opts: {
  timing: SimTiming;
  curve: boolean;
  maxConcurrent: number;
  /** More engine-sim options (the benchmark's --max-model-len, --stamp-chunks last: it takes no value). */
  engineArgs?: string[];
  /** The router and the node on the relay's CPUs, the node's engine on the load's (bench --pin). */
  pin?: Pinning;
  /** More of the node's environment (bench/heap.ts turns its metrics server on). */
  nodeEnv?: Record<string, string>;
}): Promise<XimStack> {
  const dir = mkdtempSync(join(tmpdir(), "xim-bench-"));
  const env = sandboxEnv(dir, {
    XEROTIER_AGENT_LOG_LEVEL: "warning",
    // The load generator is one client address holding up to 1024 connections (plus a warm-up's
    // closing ones): above the per-client limit a public router keeps (64).
    XEROTIER_AGENT_HTTP_MAX_CONNECTIONS_PER_CLIENT: "100000",
    // Passed through so the relay can be profiled: NODE_OPTIONS="--cpu-prof --cpu-prof-dir=DIR".
    NODE_OPTIONS: process.env.XIM_BENCH_NODE_OPTIONS,
  });
  const state = join(dir, "router");
  await runXim(["router", "init", "--state", state], env);
  const router = startXim(
    "router",
    loopbackServeArgs(state, ["--queue-timeout-ms", "120000", ...(opts.curve ? [] : ["--insecure-zmq"])]),
    env,
    opts.pin?.relay,
  );
  const info = await jsonLine<{ httpUrl: string }>(router, (o) => typeof o.httpUrl === "string");
  const joinKey = JSON.parse(
    await runXim(["router", "join-key", "create", "--state", state, "--json"], env),
  ).key;
  const apiKey = JSON.parse(
    await runXim(["router", "api-key", "create", "--state", state, "--tenant", "bench", "--json"], env),
  ).key;
  const t = opts.timing;
  const node = startXim(
    "node",
    ["run"],
    {
      ...env,
      XEROTIER_AGENT_ENGINE: "sim",
      XEROTIER_AGENT_JOIN_KEY: joinKey,
      XEROTIER_AGENT_ALLOW_INSECURE: opts.curve ? "0" : "1",
      XEROTIER_AGENT_MAX_CONCURRENT: String(opts.maxConcurrent),
      XEROTIER_AGENT_VLLM_ARGS: [
        `--load-time-ms 0 --ttft-ms ${t.ttftMs} --itl-ms ${t.itlMs} --output-tokens ${t.outputTokens} --max-num-seqs ${opts.maxConcurrent}`,
        ...(opts.engineArgs ?? []),
      ].join(" "),
      XEROTIER_AGENT_VLLM_SALT_SECRET: randomBytes(16).toString("hex"),
      XEROTIER_AGENT_DISABLE_METRICS_SERVER: "1",
      ...opts.nodeEnv,
    },
    opts.pin?.relay,
  );
  const auth = { authorization: `Bearer ${apiKey}` };
  const model = await until(
    "the node to be ready",
    async () => {
      if (node.child.exitCode !== null) throw new Error(`the node exited: ${node.err().slice(-2000)}`);
      const res = await fetch(`${info.httpUrl}/v1/models`, { headers: auth }).catch(() => undefined);
      if (!res?.ok) return undefined;
      const list = (await res.json()) as { data: { id: string }[] };
      return list.data[0]?.id;
    },
    60_000,
  );
  // The node started its engine on the relay's CPUs (a child inherits the mask): it is load.
  if (opts.pin) for (const pid of childrenOf(node.child.pid as number)) pinProcess(pid, opts.pin.load);
  return {
    httpUrl: info.httpUrl,
    apiKey,
    model,
    router,
    node,
    stop: async () => {
      await node.stop();
      await router.stop();
      rmSync(dir, { recursive: true, force: true });
    },
  };
}
