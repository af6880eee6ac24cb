/**
 * The main job in one command (`npm run demo`), no GPU needed: in a
 * temporary folder it starts a router (`xim router init` + `serve`, OS
 * ports), mints a join key and an API key, runs a node (`xim run` with
 * the simulated engine; it enrolls itself with the join key), waits for
 * the node to be ready, sends one streaming chat completion through the
 * router's OpenAI API and prints the tokens as they arrive, then stops
 * the node (SIGTERM: drain) and the router and deletes the folder.
 *   node scripts/demo.ts
 * Exit 0 when the whole path worked; on failure the processes' last log
 * lines are printed and the exit code is 1.
 *
 * `--engine vllm --model DIR` runs the same path with the real vLLM serving
 * a local model folder (scripts/check-device.ts uses it on GPU machines).
 * `--deadline SECONDS` bounds the whole run (default 50 with the simulated
 * engine, 540 with vLLM); tests/e2e/demo.test.ts gives a loaded CI machine more.
 */
import { type ChildProcess, spawn } from "node:child_process";
import { randomBytes } from "node:crypto";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { parseArgs } from "node:util";
import { loopbackServeArgs, sandboxEnv } from "./lib/loopback-router.ts";

const ROOT = join(import.meta.dirname, "..");
const MAIN = join(ROOT, "main.ts");
const { values: cli } = parseArgs({
  options: {
    engine: { type: "string", default: "sim" },
    model: { type: "string" },
    deadline: { type: "string" },
  },
});
const REAL_ENGINE = cli.engine === "vllm";
if (cli.engine !== "sim" && !REAL_ENGINE) throw new Error(`--engine ${cli.engine}: expected sim or vllm`);
if (REAL_ENGINE && !cli.model) throw new Error("--engine vllm needs --model DIR (a local model folder)");
// vLLM loads weights and captures CUDA graphs: minutes, not the simulator's 300 ms.
const DEADLINE_MS =
  cli.deadline === undefined ? (REAL_ENGINE ? 540_000 : 50_000) : Number(cli.deadline) * 1000;
if (!(DEADLINE_MS > 0)) throw new Error(`--deadline ${cli.deadline}: expected a number of seconds above 0`);

const dir = mkdtempSync(join(tmpdir(), "xim-demo-"));
// A compile cache the caller set (npm test does) makes each of the demo's Node starts cheaper.
const env = sandboxEnv(dir, {
  XEROTIER_AGENT_LOG_LEVEL: "info",
  NODE_COMPILE_CACHE: process.env.NODE_COMPILE_CACHE,
});
const routerState = join(dir, "router");

interface Proc {
  name: string;
  child: ChildProcess;
  out: string;
  err: string;
  exited: Promise<number | null>;
}

const running: Proc[] = [];

function start(name: string, args: string[], extra: Record<string, string> = {}): Proc {
  const child = spawn(process.execPath, [MAIN, ...args], {
    cwd: ROOT,
    env: { ...env, ...extra },
    stdio: ["ignore", "pipe", "pipe"],
  });
  const p: Proc = {
    name,
    child,
    out: "",
    err: "",
    exited: new Promise((resolve) => child.once("exit", (code) => resolve(code))),
  };
  child.stdout?.on("data", (d: Buffer) => {
    p.out += d.toString();
  });
  child.stderr?.on("data", (d: Buffer) => {
    p.err += d.toString();
  });
  running.push(p);
  return p;
}

async function xim(args: string[]): Promise<string> {
  const p = start(`xim ${args.slice(0, 2).join(" ")}`, args);
  const code = await p.exited;
  running.splice(running.indexOf(p), 1);
  if (code !== 0) throw new Error(`xim ${args.join(" ")} exited ${code}: ${p.err.trim()}`);
  return p.out;
}

/** Waits for `fn`'s value; the deadline's watchdog bounds every wait. */
async function until<T>(
  what: string,
  fn: () => Promise<T | undefined> | T | undefined,
  ms = DEADLINE_MS,
): Promise<T> {
  const end = Date.now() + ms;
  for (;;) {
    const value = await fn();
    if (value !== undefined) return value;
    for (const p of running)
      if (p.child.exitCode !== null) throw new Error(`${p.name} exited while waiting for ${what}`);
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

let lastStep = "starting";

function step(text: string): void {
  lastStep = text;
  process.stdout.write(
    `\x1b[2m==> ${text}\x1b[0m\n`.replace(/\x1b\[[0-9;]*m/g, process.stdout.isTTY ? "$&" : ""),
  );
}

async function stop(p: Proc, label: string): Promise<void> {
  p.child.kill("SIGTERM");
  const timer = setTimeout(() => p.child.kill("SIGKILL"), 15_000);
  const code = await p.exited;
  clearTimeout(timer);
  running.splice(running.indexOf(p), 1);
  if (code !== 0) throw new Error(`${label} exited ${code} after SIGTERM: ${p.err.trim().slice(-2000)}`);
}

async function main(): Promise<void> {
  const t0 = Date.now();
  step(`router: xim router init && xim router serve (state in ${routerState})`);
  await xim(["router", "init", "--state", routerState]);
  const router = start("router", loopbackServeArgs(routerState));
  const info = await until("the router to listen", () => {
    const line = router.out.split("\n").find((l) => l.startsWith("{"));
    return line ? (JSON.parse(line) as { httpUrl: string; enrollUrl: string }) : undefined;
  });
  step(`router serving: OpenAI API ${info.httpUrl}, enrollment ${info.enrollUrl}`);

  const joinKey = JSON.parse(
    await xim(["router", "join-key", "create", "--state", routerState, "--json"]),
  ).key;
  const apiKey = JSON.parse(
    await xim(["router", "api-key", "create", "--state", routerState, "--tenant", "demo", "--json"]),
  ).key;
  step("minted a join key (for the node) and an API key (for the client)");

  step(
    REAL_ENGINE
      ? `node: XEROTIER_AGENT_ENGINE=vllm xim run (enrolls, starts vLLM with ${cli.model})`
      : "node: XEROTIER_AGENT_ENGINE=sim xim run (enrolls with the join key, starts the simulated engine)",
  );
  const engineEnv: Record<string, string> = REAL_ENGINE
    ? { XEROTIER_AGENT_ENGINE: "vllm", XEROTIER_AGENT_INITIAL_MODEL_PATH: cli.model as string }
    : {
        XEROTIER_AGENT_ENGINE: "sim",
        XEROTIER_AGENT_VLLM_ARGS: "--load-time-ms 300 --ttft-ms 150 --itl-ms 40 --output-tokens 40",
      };
  const node = start("node", ["run"], {
    ...engineEnv,
    XEROTIER_AGENT_JOIN_KEY: joinKey,
    XEROTIER_AGENT_CONFIG_DIR: join(dir, "node"),
    XEROTIER_AGENT_VLLM_SALT_SECRET: randomBytes(16).toString("hex"),
    XEROTIER_AGENT_DISABLE_METRICS_SERVER: "1",
  });
  const auth = { authorization: `Bearer ${apiKey}` };
  const model = await until("the node to be ready", async () => {
    const res = await fetch(`${info.httpUrl}/v1/models`, { headers: auth }).catch(() => undefined);
    if (!res?.ok) return undefined;
    const list = (await res.json()) as { data: { id: string }[] };
    return list.data[0]?.id;
  });
  step(`node ready, serving '${model}'; streaming one chat completion through the router:`);

  const sent = Date.now();
  const res = await fetch(`${info.httpUrl}/v1/chat/completions`, {
    method: "POST",
    headers: { ...auth, "content-type": "application/json" },
    body: JSON.stringify({
      model,
      stream: true,
      stream_options: { include_usage: true },
      max_tokens: 40,
      messages: [{ role: "user", content: "Say something about rivers." }],
    }),
  });
  if (res.status !== 200 || !res.body)
    throw new Error(`the router answered ${res.status}: ${await res.text()}`);
  const requestId = res.headers.get("x-request-id");
  const decoder = new TextDecoder();
  let buffer = "";
  let tokens = 0;
  let firstAt = 0;
  let usage: { completion_tokens?: number } | undefined;
  let done = false;
  process.stdout.write("\n  ");
  for await (const piece of res.body) {
    buffer += decoder.decode(piece, { stream: true });
    let end = buffer.indexOf("\n\n");
    while (end !== -1) {
      const event = buffer.slice(0, end);
      buffer = buffer.slice(end + 2);
      end = buffer.indexOf("\n\n");
      if (!event.startsWith("data: ")) continue;
      const data = event.slice(6);
      if (data === "[DONE]") {
        done = true;
        continue;
      }
      const chunk = JSON.parse(data) as {
        error?: { message: string };
        choices?: { delta?: { content?: string } }[];
        usage?: { completion_tokens?: number };
      };
      if (chunk.error) throw new Error(`the stream failed: ${chunk.error.message}`);
      if (chunk.usage) usage = chunk.usage;
      const text = chunk.choices?.[0]?.delta?.content;
      if (text) {
        if (tokens === 0) firstAt = Date.now();
        tokens++;
        process.stdout.write(text);
      }
    }
  }
  process.stdout.write("\n\n");
  if (!done || tokens === 0) throw new Error("the stream ended without tokens and [DONE]");
  step(
    `${tokens} tokens (usage says ${usage?.completion_tokens ?? "?"}), first after ${firstAt - sent} ms, all in ${Date.now() - sent} ms; X-Request-ID ${requestId}`,
  );

  step("stopping: SIGTERM to the node (drain, release the lease), then to the router");
  await stop(node, "xim run");
  await stop(router, "xim router serve");
  step(`done in ${((Date.now() - t0) / 1000).toFixed(1)} s; everything stopped cleanly`);
}

const watchdog = setTimeout(() => {
  process.stderr.write(`demo: no result within ${DEADLINE_MS / 1000} s (at: ${lastStep})\n`);
  printLastLines();
  cleanup();
  process.exit(1);
}, DEADLINE_MS);

function printLastLines(): void {
  for (const p of running)
    process.stderr.write(`\n--- ${p.name} (last lines) ---\n${p.err.split("\n").slice(-15).join("\n")}\n`);
}

function cleanup(): void {
  for (const p of running) if (p.child.exitCode === null) p.child.kill("SIGKILL");
  rmSync(dir, { recursive: true, force: true });
}

try {
  await main();
  clearTimeout(watchdog);
  cleanup();
} catch (err) {
  clearTimeout(watchdog);
  process.stderr.write(`\ndemo failed: ${(err as Error).message}\n`);
  printLastLines();
  cleanup();
  process.exitCode = 1;
}
