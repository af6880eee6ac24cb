/**
 * Start-up figures (`npm run bench:startup`):
 *   1. `xim --version` of the single executable (dist/xim; `npm run build` first),
 *      with hyperfine when it is installed, else 20 timed runs;
 *   2. time to the first served token: from spawning `xim run` (an enrolled node,
 *      simulated engine with no load time) to the first token of a streamed
 *      completion through a running router. From source by default (which
 *      includes compiling the TypeScript); XIM_BENCH_BINARY=dist/xim times the binary.
 * Prints medians and writes bench/startup.json.
 */
import { execFileSync, spawnSync } from "node:child_process";
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { performance } from "node:perf_hooks";
import { loopbackServeArgs, sandboxEnv } from "../scripts/lib/loopback-router.ts";
import { jsonLine, ROOT, runXim, startXim, until } from "./lib/procs.ts";

const BINARY = join(ROOT, "dist", "xim");
const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];

function versionTimes(): { tool: string; medianMs: number; runs: number } | undefined {
  if (!existsSync(BINARY)) return undefined;
  const hyperfine = spawnSync("hyperfine", ["--version"]).status === 0;
  if (hyperfine) {
    const out = join(tmpdir(), `xim-hyperfine-${process.pid}.json`);
    execFileSync(
      "hyperfine",
      ["--warmup", "3", "--runs", "30", "--export-json", out, `${BINARY} --version`],
      {
        stdio: "ignore",
      },
    );
    const r = JSON.parse(readFileSync(out, "utf8")).results[0];
    rmSync(out, { force: true });
    return { tool: "hyperfine", medianMs: r.median * 1000, runs: r.times.length };
  }
  const times: number[] = [];
  for (let i = 0; i < 20; i++) {
    const t = performance.now();
    execFileSync(BINARY, ["--version"]);
    times.push(performance.now() - t);
  }
  return { tool: "20 timed runs", medianMs: median(times), runs: 20 };
}

async function firstTokenTimes(runs: number): Promise<number[]> {
  const dir = mkdtempSync(join(tmpdir(), "xim-startup-"));
  const env = sandboxEnv(dir, { XEROTIER_AGENT_LOG_LEVEL: "warning" });
  const state = join(dir, "router");
  await runXim(["router", "init", "--state", state], env);
  const router = startXim("router", loopbackServeArgs(state), env);
  const times: number[] = [];
  try {
    const { httpUrl } = await jsonLine<{ httpUrl: string }>(router, (o) => typeof o.httpUrl === "string");
    const joinKey = JSON.parse(
      await runXim(["router", "join-key", "create", "--state", state, "--json"], env),
    ).key;
    const apiKey = JSON.parse(
      await runXim(["router", "api-key", "create", "--state", state, "--tenant", "t", "--json"], env),
    ).key;
    const nodeEnv = {
      ...env,
      XEROTIER_AGENT_CONFIG_DIR: join(dir, "node"),
      XEROTIER_AGENT_ENGINE: "sim",
      XEROTIER_AGENT_VLLM_ARGS: "--load-time-ms 0 --ttft-ms 0 --itl-ms 0 --output-tokens 4",
      XEROTIER_AGENT_DISABLE_METRICS_SERVER: "1",
    };
    await runXim(["enroll", "--join-key", joinKey], nodeEnv);
    const auth = { authorization: `Bearer ${apiKey}`, "content-type": "application/json" };
    for (let i = 0; i < runs; i++) {
      const t0 = performance.now();
      const node = startXim("node", ["run"], nodeEnv);
      try {
        const ms = await until(
          "a first token",
          async () => {
            const res = await fetch(`${httpUrl}/v1/chat/completions`, {
              method: "POST",
              headers: auth,
              body: JSON.stringify({
                model: "xim-sim",
                stream: true,
                messages: [{ role: "user", content: "hi" }],
              }),
            }).catch(() => undefined);
            if (res?.status !== 200 || !res.body) return undefined;
            for await (const piece of res.body) {
              if (Buffer.from(piece).includes("data: {")) return performance.now() - t0;
            }
            return undefined;
          },
          60_000,
        );
        times.push(ms);
      } finally {
        await node.stop();
      }
    }
  } finally {
    await router.stop();
    rmSync(dir, { recursive: true, force: true });
  }
  return times;
}

const version = versionTimes();
const tokens = await firstTokenTimes(5);
const result = {
  date: new Date().toISOString(),
  versionOfBinary: version ?? "dist/xim not built (npm run build)",
  firstServedToken: {
    ran: process.env.XIM_BENCH_BINARY ? "the single executable" : "from source",
    medianMs: median(tokens),
    runsMs: tokens.map((t) => Math.round(t)),
  },
};
writeFileSync(join(ROOT, "bench", "startup.json"), `${JSON.stringify(result, null, 2)}\n`);
process.stdout.write(
  `dist/xim --version: ${version ? `${version.medianMs.toFixed(1)} ms median (${version.tool}, ${version.runs} runs)` : "not built"}\n` +
    `xim run -> first served token (${result.firstServedToken.ran}, simulated engine): ${median(tokens).toFixed(0)} ms median of ${tokens.length}\n`,
);
