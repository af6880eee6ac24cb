/**
 * The fault-injection soak: a router (`xim router serve`) and two nodes
 * (`xim run`, simulated engine) as real processes, a bounded load of
 * OpenAI requests, and faults injected while it runs:
 *
 * - random client cancellations and slow readers (throughout);
 * - an engine kill (SIGKILL to the node's engine child; the supervisor restarts it);
 * - a router kill (SIGKILL) and restart on the same ports;
 * - a node SIGSTOP for longer than its lease, then SIGCONT;
 * - one node drained by SIGTERM while the other takes over, then started again.
 *
 * Every request must end complete and byte-identical to the engine's
 * output (a reference simulated engine in this process answers the same
 * request with the same X-Request-ID: the simulator is deterministic given
 * the id, the prompt and `--created`), or with an error the client sees
 * (an OpenAI JSON error status, or an SSE error event after a clean prefix
 * of the expected bytes); a dropped connection counts only while a fault
 * that explains it was under way. After the run the router and the nodes
 * must report nothing in flight, no unacknowledged credit and no queue;
 * RSS growth is measured from /proc; the processes' logs are scanned for
 * unhandled rejections, internal errors and stack traces.
 *
 *   node tests/soak/run.ts [--requests 5000] [--concurrency 16] [--seed 1] [--json]
 *
 * Exit 0 when no violation was found. tests/soak/soak.test.ts runs it in CI.
 */
import { execFileSync } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import http from "node:http";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { parseArgs } from "node:util";
import { findFreePort } from "../../src/engine/free-port.ts";
import { SimulatedEngineServer } from "../../src/engine/simulated.ts";
import { baseEnv, type Env, waitFor, XimProcess, xim } from "../router/harness.ts";

export interface SoakOptions {
  requests: number;
  /** Client requests in flight at once. */
  concurrency?: number;
  seed?: number;
  /** Progress lines (phase starts and ends). */
  log?: (line: string) => void;
}

export interface RssFigures {
  process: string;
  /** Request count at the two measurements. */
  fromRequest: number;
  toRequest: number;
  startMiB: number;
  endMiB: number;
  growthMiB: number;
}

export interface FaultRecord {
  name: string;
  atRequest: number;
  ms: number;
  /** Outcomes of the requests that overlapped the fault. */
  outcomes: Record<string, number>;
}

export interface SoakSummary {
  requests: number;
  wallMs: number;
  outcomes: Record<string, number>;
  /** Everything that breaks a rule; empty on success. */
  violations: string[];
  faults: FaultRecord[];
  rss: RssFigures[];
  rssBoundMiB: number;
  /** Gauges read after the run: all must be 0. */
  final: Record<string, number>;
  /**
   * Streams cancelled for want of credit (xim_node_flow_control_stalls_total) by node A's first
   * process (read before its drain) and node B. Slow readers read every 10 ms and never stall:
   * a stall is a stream whose router forgot it.
   */
  stalls: Record<string, number>;
  /** Lines of the processes' logs that name a crash or an unhandled error. */
  logProblems: string[];
  /** Warnings and errors the processes logged, by message, for the reader. */
  logCounts: Record<string, number>;
  /** Each stall, by the fault that preceded its wait for credit. */
  stallCauses: Record<string, number>;
}

/**
 * RSS bound per long-lived process over the measured part of the run
 * (from 5% of the requests, after warm-up, to the end). A process's RSS
 * after warm-up is V8's heap, which grows until its GC settles at a size
 * set by the allocation rate (so by CPU contention), not by the request
 * count, plus libzmq and socket buffers, bounded by the windows. Measured
 * on 2 shared cores: 10 to 43 MiB over 1,000 to 19,000 requests, not
 * proportional to the count (a router grew 42.5 MiB over 5,000 requests
 * and its successor 16.7 MiB over the next 13,000), and up to 70 MiB over
 * 3,250 requests with two soaks running at once. 96 MiB leaves room for
 * that and still fails on a per-request leak of 20 KiB over 5,000
 * requests, or of 1 KiB over 100,000.
 */
export const RSS_BOUND_MIB = 96;

const MODEL = "xim-sim";
const CREATED = 1_700_000_000;
const OUTPUT_TOKENS = 48;
const REQUEST_TIMEOUT_MS = 60_000;
/**
 * The nodes' FLOW_CONTROL_TIMEOUT_SECONDS: a stream without credit this long
 * is cancelled and counted a stall. It must outlast the longest a node may
 * take to notice that its router died, or a stream of a killed router is
 * counted a stall when its node merely had not noticed yet: node A's lease
 * (4 s) plus a renewal interval (0.5 s) when nothing went wrong, more on two
 * loaded cores (seen: both nodes stalled after the router kill with 5 s).
 * 20 s leaves 15 s for that; a stream the router forgot still stalls, later.
 */
const STALL_TIMEOUT_S = 20;
/** A fault explains a dropped connection this long after it ended (lease expiry, grace, restart). */
const FAULT_SLACK_MS = 3000;

/** mulberry32: a small seeded generator, so a failing run can be repeated. */
function rng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/** Sum of a metric's samples (all label sets, or those containing `labels`). */
export function metricValue(text: string, name: string, labels = ""): number | undefined {
  let sum: number | undefined;
  for (const line of text.split("\n")) {
    if (!line.startsWith(name)) continue;
    const rest = line.slice(name.length);
    if (rest[0] !== " " && rest[0] !== "{") continue;
    if (labels && !rest.includes(labels)) continue;
    const value = Number(rest.slice(rest.lastIndexOf(" ") + 1));
    if (Number.isFinite(value)) sum = (sum ?? 0) + value;
  }
  return sum;
}

function rssMiB(pid: number): number {
  const status = readFileSync(`/proc/${pid}/status`, "utf8");
  const m = /VmRSS:\s+(\d+) kB/.exec(status);
  return m ? Number(m[1]) / 1024 : Number.NaN;
}

async function getText(url: string, timeoutMs = 3000): Promise<{ status: number; text: string } | undefined> {
  try {
    const res = await fetch(url, { signal: AbortSignal.timeout(timeoutMs) });
    return { status: res.status, text: await res.text() };
  } catch {
    return undefined;
  }
}

interface Spec {
  index: number;
  requestId: string;
  path: "/v1/chat/completions" | "/v1/completions";
  body: Buffer;
  stream: boolean;
  kind: "normal" | "slow" | "cancel";
  cancelAfterMs: number;
}

interface Result {
  status?: number;
  contentType?: string;
  requestId?: string;
  body: Buffer;
  error?: string;
  cancelled: boolean;
  timedOut: boolean;
  start: number;
  end: number;
}

const PROMPTS = ["tell me about rivers", "a stone bridge", "the signal and the noise", "green paper lights"];

function makeSpec(index: number, runId: string, random: () => number): Spec {
  const r = random();
  const kind: Spec["kind"] = r < 0.03 ? "slow" : r < 0.09 ? "cancel" : "normal";
  const chat = kind !== "normal" || random() < 0.6;
  const stream = kind !== "normal" || random() < 0.7;
  const prompt = `${PROMPTS[index % PROMPTS.length]} #${index}`;
  const body: Record<string, unknown> = { model: MODEL, stream };
  if (chat) body.messages = [{ role: "user", content: prompt }];
  else body.prompt = prompt;
  if (kind === "slow") {
    // Long enough to outlast the router's window several times over: flow control works.
    body.max_tokens = 300 + Math.floor(random() * 300);
    body.ignore_eos = true;
  } else if (kind === "cancel") {
    body.max_tokens = 200;
    body.ignore_eos = true;
  } else body.max_tokens = 1 + Math.floor(random() * OUTPUT_TOKENS);
  if (stream && random() < 0.5) body.stream_options = { include_usage: true };
  return {
    index,
    requestId: `soak-${runId}-${index}`,
    path: chat ? "/v1/chat/completions" : "/v1/completions",
    body: Buffer.from(JSON.stringify(body)),
    stream,
    kind,
    cancelAfterMs: Math.floor(random() * 150),
  };
}

/** One request over node:http, so the reader's pace and the cancel are under our control. */
function send(port: number, agent: http.Agent, spec: Spec, apiKey: string): Promise<Result> {
  return new Promise((resolve) => {
    const start = Date.now();
    const parts: Buffer[] = [];
    let settled = false;
    let cancelled = false;
    let timedOut = false;
    let status: number | undefined;
    let contentType: string | undefined;
    let requestId: string | undefined;
    const done = (error?: string) => {
      if (settled) return;
      settled = true;
      clearTimeout(timeout);
      clearTimeout(cancelTimer);
      resolve({
        status,
        contentType,
        requestId,
        body: Buffer.concat(parts),
        error,
        cancelled,
        timedOut,
        start,
        end: Date.now(),
      });
    };
    const req = http.request({
      host: "127.0.0.1",
      port,
      path: spec.path,
      method: "POST",
      agent,
      headers: {
        authorization: `Bearer ${apiKey}`,
        "content-type": "application/json",
        "content-length": spec.body.length,
        "x-request-id": spec.requestId,
      },
    });
    const timeout = setTimeout(() => {
      timedOut = true;
      req.destroy();
      done("timeout");
    }, REQUEST_TIMEOUT_MS);
    let cancelTimer: NodeJS.Timeout | undefined;
    if (spec.kind === "cancel")
      cancelTimer = setTimeout(() => {
        cancelled = true;
        req.destroy();
        done();
      }, spec.cancelAfterMs);
    req.on("error", (err) => done(err.message));
    req.on("response", (res) => {
      status = res.statusCode;
      contentType = String(res.headers["content-type"] ?? "");
      requestId = res.headers["x-request-id"] as string | undefined;
      res.on("data", (d: Buffer) => {
        parts.push(d);
        if (spec.kind === "slow") {
          res.pause();
          setTimeout(() => res.resume(), 10);
        }
      });
      res.on("end", () => done());
      res.on("error", (err) => done(err.message));
      res.on("aborted", () => done("response aborted"));
    });
    req.end(spec.body);
  });
}

interface ProcInfo {
  name: string;
  proc: XimProcess;
  /** Signals we sent on purpose, so the exit is not a crash. */
  killedOnPurpose: boolean;
}

export async function runSoak(o: SoakOptions): Promise<SoakSummary> {
  const log = o.log ?? (() => undefined);
  const total = o.requests;
  const concurrency = o.concurrency ?? 16;
  const random = rng(o.seed ?? 1);
  const runId = `${o.seed ?? 1}-${Date.now().toString(36)}`;
  const home = mkdtempSync(join(tmpdir(), "xim-soak-"));
  const env: Env = baseEnv(home, { XEROTIER_AGENT_LOG_LEVEL: "info" });
  const stateDir = join(home, "router");
  const violations: string[] = [];
  const procs: ProcInfo[] = [];
  const t0 = Date.now();
  const reference = new SimulatedEngineServer({
    model: MODEL,
    created: CREATED,
    outputTokens: OUTPUT_TOKENS,
  });
  const agent = new http.Agent({ keepAlive: true, maxSockets: concurrency + 4 });
  try {
    const refAddress = (await reference.listen(0)) as { port: number };
    // Fixed ports: the restarted router must come back where the nodes' enrollment points.
    const ports = new Set<number>();
    while (ports.size < 7) ports.add(await findFreePort());
    const [pControl, pStreaming, pHttp, pMetrics, pEnroll, pNodeA, pNodeB] = [...ports];
    const init = await xim(["router", "init", "--state", stateDir], env);
    if (init.code !== 0) throw new Error(`xim router init failed: ${init.stderr}`);

    const routerArgs = [
      "router",
      "serve",
      "--state",
      stateDir,
      "--enroll-listen",
      `127.0.0.1:${pEnroll}`,
      "--control-bind",
      `tcp://127.0.0.1:${pControl}`,
      "--streaming-bind",
      `tcp://127.0.0.1:${pStreaming}`,
      "--http-host",
      "127.0.0.1",
      "--http-port",
      String(pHttp),
      "--metrics-port",
      String(pMetrics),
      // A small window: slow readers reach it and flow control pauses the nodes.
      "--flow-window-bytes",
      "16384",
      "--queue-timeout-ms",
      "10000",
      "--json",
    ];
    const startRouter = async (name: string): Promise<ProcInfo> => {
      const p: ProcInfo = { name, proc: new XimProcess(routerArgs, env), killedOnPurpose: false };
      procs.push(p);
      await p.proc.line((l) => l.startsWith("{"), 30_000);
      return p;
    };
    let router = await startRouter("router#1");
    const routerMetricsUrl = `http://127.0.0.1:${pMetrics}/metrics`;

    const joinKey = await xim(
      ["router", "join-key", "create", "--state", stateDir, "--uses", "2", "--json"],
      env,
    );
    if (joinKey.code !== 0) throw new Error(`join-key create failed: ${joinKey.stderr}`);
    const apiKeyOut = await xim(
      ["router", "api-key", "create", "--state", stateDir, "--tenant", "soak", "--json"],
      env,
    );
    if (apiKeyOut.code !== 0) throw new Error(`api-key create failed: ${apiKeyOut.stderr}`);
    const apiKey = JSON.parse(apiKeyOut.stdout).key as string;
    const key = JSON.parse(joinKey.stdout).key as string;

    const nodeEnv = (letter: string, port: number, withKey: boolean): Env => ({
      ...env,
      XEROTIER_AGENT_ENGINE: "sim",
      ...(withKey ? { XEROTIER_AGENT_JOIN_KEY: key } : {}),
      XEROTIER_AGENT_CONFIG_DIR: join(home, `node-${letter}`),
      XEROTIER_AGENT_VLLM_ARGS: `--load-time-ms 200 --ttft-ms 0 --itl-ms 1 --output-tokens ${OUTPUT_TOKENS} --created ${CREATED}`,
      // B: a short lease, so its SIGSTOP outlasts it and the router restart is a full reconnect;
      // A: a lease longer than the router's restart, so A's renewals reach the new router.
      XEROTIER_AGENT_LEASE_RENEWAL_INTERVAL_MS: letter === "B" ? "200" : "500",
      XEROTIER_AGENT_LEASE_DURATION_MS: letter === "B" ? "1000" : "4000",
      XEROTIER_AGENT_DRAIN_GRACE_SECONDS: "20",
      XEROTIER_AGENT_MAX_CONCURRENT: "16",
      XEROTIER_AGENT_FLOW_CONTROL_TIMEOUT_SECONDS: String(STALL_TIMEOUT_S),
      XEROTIER_AGENT_METRICS_PORT: String(port),
      XEROTIER_AGENT_VLLM_SALT_SECRET: "soak-salt-secret-0123456789abcdef",
    });
    const nodes: Record<"A" | "B", { info: ProcInfo; port: number }> = {
      A: {
        info: {
          name: "node-A#1",
          proc: new XimProcess(["run"], nodeEnv("A", pNodeA, true)),
          killedOnPurpose: false,
        },
        port: pNodeA,
      },
      B: {
        info: {
          name: "node-B#1",
          proc: new XimProcess(["run"], nodeEnv("B", pNodeB, true)),
          killedOnPurpose: false,
        },
        port: pNodeB,
      },
    };
    procs.push(nodes.A.info, nodes.B.info);

    const anyDead = () =>
      procs.some(
        (p) => !p.killedOnPurpose && (p.proc.child.exitCode !== null || p.proc.child.signalCode !== null),
      );
    const routerReadyNodes = async (): Promise<number> => {
      const r = await getText(routerMetricsUrl);
      return r?.status === 200 ? (metricValue(r.text, "xim_router_nodes", 'state="ready"') ?? 0) : 0;
    };
    const nodeReady = async (letter: "A" | "B"): Promise<boolean> =>
      (await getText(`http://127.0.0.1:${nodes[letter].port}/readyz`))?.status === 200;
    const bothReady = async () =>
      (await routerReadyNodes()) === 2 && (await nodeReady("A")) && (await nodeReady("B"));
    const waitBothReady = (what: string) =>
      waitFor(bothReady, {
        timeoutMs: 60_000,
        intervalMs: 100,
        what,
        stopIf: anyDead,
      });
    await waitBothReady("both nodes ready at the router");
    log(`router and two nodes ready after ${Date.now() - t0} ms`);

    // ---- load ----
    const outcomes: Record<string, number> = {};
    const results: Array<{ spec: Spec; result: Result; outcome: string }> = [];
    const faults: Array<{ name: string; atRequest: number; start: number; end: number }> = [];
    const stalls: Record<string, number> = {};
    let next = 0;
    let finished = 0;
    let faultsDone = false;
    const holdAt = Math.floor(total * 0.9);
    const count = (outcome: string) => {
      outcomes[outcome] = (outcomes[outcome] ?? 0) + 1;
    };
    const inFault = (r: Result) => faults.some((f) => r.start <= f.end + FAULT_SLACK_MS && r.end >= f.start);

    const referenceBytes = async (spec: Spec, requestId: string): Promise<Buffer> => {
      const res = await fetch(`http://127.0.0.1:${refAddress.port}${spec.path}`, {
        method: "POST",
        headers: { "content-type": "application/json", "x-request-id": requestId },
        body: spec.body,
      });
      return Buffer.from(await res.arrayBuffer());
    };

    const withoutIds = (bytes: Buffer): Buffer =>
      Buffer.from(bytes.toString("utf8").replace(/"id":"(?:chatcmpl|cmpl)-[^"]*"/g, '"id":"ID"'));

    const classify = async (spec: Spec, r: Result): Promise<string> => {
      const where = `request ${spec.index} (${spec.requestId}, ${spec.kind}, ${spec.stream ? "stream" : "json"})`;
      if (r.timedOut) {
        violations.push(`${where}: no end within ${REQUEST_TIMEOUT_MS} ms (hang)`);
        return "hang";
      }
      if (r.cancelled) return "client_cancelled";
      if (r.error !== undefined) {
        if (inFault(r))
          return r.status === undefined ? "connection_refused_or_reset" : "connection_dropped_in_fault";
        violations.push(
          `${where}: connection error outside any fault: ${r.error} (status ${r.status}, ${r.body.length} bytes)`,
        );
        return "connection_error";
      }
      if (r.status === undefined) {
        violations.push(`${where}: ended without a response`);
        return "no_response";
      }
      if (r.status >= 400) {
        let code: string | undefined;
        try {
          const e = JSON.parse(r.body.toString("utf8")) as {
            error?: { message?: unknown; type?: unknown; code?: unknown };
          };
          if (typeof e.error?.message === "string" && typeof e.error.type === "string")
            code = String(e.error.code);
        } catch {
          // not JSON: a violation below
        }
        if (code === undefined) {
          violations.push(
            `${where}: status ${r.status} without an OpenAI error body: ${r.body.toString().slice(0, 200)}`,
          );
          return "bad_error_body";
        }
        if (r.status >= 500 && r.status !== 502 && r.status !== 503 && r.status !== 504)
          violations.push(`${where}: status ${r.status} (${code}): ${r.body.toString().slice(0, 300)}`);
        // Every request asks for the model the nodes serve: "no such model" is never true here,
        // not even while the restarted router waits for its nodes to register again.
        if (r.status === 404)
          violations.push(`${where}: 404 (${code}) for a served model: ${r.body.toString().slice(0, 300)}`);
        return `http_${r.status}_${code}`;
      }
      if (r.status !== 200) {
        violations.push(`${where}: unexpected status ${r.status}`);
        return `status_${r.status}`;
      }
      // The engine's response ids derive from the request id it got, which is the router's own
      // (unpredictable by design, never the client's): compare everything but those ids.
      const expected = withoutIds(await referenceBytes(spec, "soak-reference"));
      const body = withoutIds(r.body);
      if (body.equals(expected)) return "ok";
      if (spec.stream) {
        // A failed stream: a clean prefix of the expected events, then one error event.
        const text = body.toString("utf8");
        const at = text.lastIndexOf('data: {"error"');
        if (at >= 0 && text.endsWith("\n\n")) {
          const prefix = body.subarray(0, Buffer.byteLength(text.slice(0, at)));
          let code: string | undefined;
          try {
            code = String((JSON.parse(text.slice(at + 6, -2)) as { error: { code: unknown } }).error.code);
          } catch {
            // not an error event
          }
          if (code !== undefined && prefix.equals(expected.subarray(0, prefix.length)))
            return `sse_error_${code}`;
        }
      }
      violations.push(
        `${where}: 200 with ${r.body.length} bytes that are neither the engine's ${expected.length} nor a prefix plus an error event; tail: ${JSON.stringify(r.body.toString().slice(-200))}`,
      );
      return spec.stream ? "truncated_or_corrupt_stream" : "corrupt_json";
    };

    const worker = async (): Promise<void> => {
      for (;;) {
        if (next >= total) return;
        if (next >= holdAt && !faultsDone) {
          await new Promise((r) => setTimeout(r, 50));
          continue;
        }
        const spec = makeSpec(next++, runId, random);
        const result = await send(pHttp, agent, spec, apiKey);
        const outcome = await classify(spec, result);
        count(outcome);
        results.push({ spec, result, outcome });
        finished++;
        // The router is down: do not burn the request budget on refused connections.
        if (result.status === undefined && result.error !== undefined)
          await new Promise((r) => setTimeout(r, 250));
      }
    };

    const untilFinished = (n: number) =>
      waitFor(() => finished >= n, { timeoutMs: 600_000, intervalMs: 20, what: `${n} requests finished` });
    const fault = async (name: string, fn: () => Promise<void>) => {
      const f = { name, atRequest: finished, start: Date.now(), end: Number.POSITIVE_INFINITY };
      faults.push(f);
      log(`fault: ${name} at request ${finished}`);
      await fn();
      f.end = Date.now();
      log(`fault: ${name} recovered after ${f.end - f.start} ms`);
    };
    const rss: RssFigures[] = [];
    const rssStart = new Map<string, { pid: number; at: number; mib: number }>();
    const rssMark = (name: string, pid: number) =>
      rssStart.set(name, { pid, at: finished, mib: rssMiB(pid) });
    const rssEnd = (name: string) => {
      const s = rssStart.get(name);
      if (!s) return;
      const mib = rssMiB(s.pid);
      rss.push({
        process: name,
        fromRequest: s.at,
        toRequest: finished,
        startMiB: Math.round(s.mib * 10) / 10,
        endMiB: Math.round(mib * 10) / 10,
        growthMiB: Math.round((mib - s.mib) * 10) / 10,
      });
    };

    const orchestrate = async (): Promise<void> => {
      const at = (f: number) => Math.max(1, Math.floor(total * f));
      await untilFinished(at(0.05));
      rssMark("router#1", router.proc.pid);
      rssMark("node-B", nodes.B.info.proc.pid);

      await untilFinished(at(0.12));
      await fault("engine kill (SIGKILL to node A's engine; the supervisor restarts it)", async () => {
        const pids = execFileSync("pgrep", ["-P", String(nodes.A.info.proc.pid)], { encoding: "utf8" })
          .split("\n")
          .filter(Boolean)
          .map(Number);
        if (pids.length === 0) throw new Error("node A has no engine child");
        for (const pid of pids) process.kill(pid, "SIGKILL");
        await waitFor(
          async () => {
            const r = await getText(`http://127.0.0.1:${nodes.A.port}/metrics`);
            return r && (metricValue(r.text, "xim_node_engine_restarts_total") ?? 0) >= 1;
          },
          { timeoutMs: 30_000, intervalMs: 100, what: "node A to count the engine restart", stopIf: anyDead },
        );
        await waitBothReady("node A's engine ready again");
      });

      await untilFinished(at(0.3));
      rssEnd("router#1");
      await fault("router kill (SIGKILL) and restart on the same ports", async () => {
        router.killedOnPurpose = true;
        router.proc.signal("SIGKILL");
        await router.proc.exited;
        await new Promise((r) => setTimeout(r, 300));
        router = await startRouter("router#2");
        await waitBothReady("both nodes registered with the restarted router");
      });

      await untilFinished(at(0.35));
      rssMark("router#2", router.proc.pid);

      await untilFinished(at(0.5));
      await fault("node B SIGSTOP for 2.5 s (lease 1 s), then SIGCONT", async () => {
        const b = nodes.B.info;
        b.proc.signal("SIGSTOP");
        await waitFor(async () => (await routerReadyNodes()) === 1, {
          timeoutMs: 20_000,
          intervalMs: 50,
          what: "the router to expire node B's lease",
        });
        await new Promise((r) => setTimeout(r, 1500));
        b.proc.signal("SIGCONT");
        await waitBothReady("node B registered again after SIGCONT");
      });

      await untilFinished(at(0.7));
      await fault("node A drains on SIGTERM while node B takes over; A starts again", async () => {
        const a = nodes.A.info;
        const m = await getText(`http://127.0.0.1:${nodes.A.port}/metrics`);
        stalls["node-A#1"] = m ? (metricValue(m.text, "xim_node_flow_control_stalls_total") ?? 0) : -1;
        a.killedOnPurpose = true;
        a.proc.signal("SIGTERM");
        const exit = await a.proc.exited;
        if (exit.code !== 0)
          violations.push(
            `node A exited ${exit.code} (${exit.signal}) after SIGTERM: ${exit.stderr.slice(-1000)}`,
          );
        if (!/draining/.test(exit.stderr)) violations.push("node A did not log its drain");
        const again: ProcInfo = {
          name: "node-A#2",
          proc: new XimProcess(["run"], nodeEnv("A", nodes.A.port, false)),
          killedOnPurpose: false,
        };
        procs.push(again);
        nodes.A.info = again;
        await waitBothReady("node A serving again after its restart");
      });
      faultsDone = true;
    };

    const orchestration = orchestrate().catch((err: unknown) => {
      violations.push(`fault orchestration failed: ${(err as Error).message}`);
      faultsDone = true;
    });
    await Promise.all([...Array.from({ length: concurrency }, () => worker()), orchestration]);
    log(`load done: ${finished} requests in ${Date.now() - t0} ms`);

    // ---- after the run: nothing in flight, no credit held, no queue ----
    const final: Record<string, number> = {};
    const readFinal = async (): Promise<boolean> => {
      const r = await getText(routerMetricsUrl);
      const a = await getText(`http://127.0.0.1:${nodes.A.port}/metrics`);
      const b = await getText(`http://127.0.0.1:${nodes.B.port}/metrics`);
      if (!r || !a || !b) return false;
      final.router_streams_in_flight = metricValue(r.text, "xim_router_streams_in_flight") ?? -1;
      final.router_queue_depth = metricValue(r.text, "xim_router_queue_depth") ?? -1;
      for (const [n, m] of [
        ["A", a],
        ["B", b],
      ] as const) {
        final[`node_${n}_streams_in_flight`] = metricValue(m.text, "xim_node_streams_in_flight") ?? -1;
        final[`node_${n}_unacknowledged_bytes`] = metricValue(m.text, "xim_node_unacknowledged_bytes") ?? -1;
      }
      const held = Object.values(final).every((v) => v === 0);
      stalls["node-B"] = metricValue(b.text, "xim_node_flow_control_stalls_total") ?? 0;
      return held;
    };
    // Cancelled streams are confirmed by the node within moments; a forgotten stream ends at the stall
    // timeout, and is then counted below: wait past it, with 10 s for a loaded machine.
    const settled = await waitFor(readFinal, {
      timeoutMs: STALL_TIMEOUT_S * 1000 + 10_000,
      intervalMs: 200,
      what: "",
    }).catch(() => false);
    if (!settled) violations.push(`after the run something is still held: ${JSON.stringify(final)}`);
    // Slow readers keep taking bytes, so no stream may wait out the flow timeout: one that does was
    // forgotten (its client gone at the router, the node still waiting for credit).
    for (const [node, n] of Object.entries(stalls))
      if (n > 0) violations.push(`${node}: ${n} stream(s) stalled for want of credit`);

    rssEnd("router#2");
    rssEnd("node-B");
    for (const f of rss)
      if (f.growthMiB > RSS_BOUND_MIB)
        violations.push(`${f.process} RSS grew ${f.growthMiB} MiB (bound ${RSS_BOUND_MIB} MiB)`);

    // ---- clean stop ----
    for (const n of ["A", "B"] as const) {
      const p = nodes[n].info;
      p.killedOnPurpose = true;
      const exit = await p.proc.stop(30_000);
      if (exit.code !== 0) violations.push(`${p.name} exited ${exit.code} (${exit.signal}) on SIGTERM`);
    }
    router.killedOnPurpose = true;
    const rexit = await router.proc.stop(15_000);
    if (rexit.code !== 0) violations.push(`${router.name} exited ${rexit.code} (${rexit.signal}) on SIGTERM`);

    // ---- logs ----
    const logProblems: string[] = [];
    const logCounts: Record<string, number> = {};
    const stallCauses: Record<string, number> = {};
    const crash =
      /unhandled|uncaught|internal error|internal_error|request handler failed|"level":"fatal"|^\s+at .+:\d+:\d+\)?$/i;
    for (const p of procs) {
      if (!p.killedOnPurpose && (p.proc.child.exitCode !== null || p.proc.child.signalCode !== null))
        violations.push(
          `${p.name} exited on its own: code ${p.proc.child.exitCode}, signal ${p.proc.child.signalCode}`,
        );
      for (const line of p.proc.stderr.split("\n")) {
        if (!line.trim()) continue;
        if (crash.test(line)) logProblems.push(`${p.name}: ${line.slice(0, 400)}`);
        const m = /"level":"(warn|error|fatal)".*?"msg":"([^"]{0,120})/.exec(line);
        if (m) {
          const k = `${p.name.replace(/#\d+$/, "")} ${m[1]}: ${m[2]}`;
          logCounts[k] = (logCounts[k] ?? 0) + 1;
          if (m[2].startsWith("stream stalled")) {
            // Which fault left it behind: the last one that began before its wait for credit did.
            const at = Date.parse(/"time":"([^"]+)"/.exec(line)?.[1] ?? "");
            const began = at - STALL_TIMEOUT_S * 1000;
            const cause = faults.filter((f) => f.start <= began + FAULT_SLACK_MS).at(-1)?.name ?? "no fault";
            stallCauses[`${p.name}: after ${cause}`] = (stallCauses[`${p.name}: after ${cause}`] ?? 0) + 1;
          }
        }
      }
    }
    for (const line of logProblems.slice(0, 20)) violations.push(`log: ${line}`);

    const faultRecords: FaultRecord[] = faults.map((f) => {
      const o: Record<string, number> = {};
      for (const { result, outcome } of results)
        if (result.start <= f.end + FAULT_SLACK_MS && result.end >= f.start)
          o[outcome] = (o[outcome] ?? 0) + 1;
      return { name: f.name, atRequest: f.atRequest, ms: f.end - f.start, outcomes: o };
    });
    if (finished !== total) violations.push(`${finished} of ${total} requests finished`);
    if ((outcomes.ok ?? 0) < total * 0.5)
      violations.push(`only ${outcomes.ok ?? 0} of ${total} requests completed`);
    return {
      requests: finished,
      wallMs: Date.now() - t0,
      outcomes,
      violations,
      faults: faultRecords,
      rss,
      rssBoundMiB: RSS_BOUND_MIB,
      final,
      stalls,
      logProblems,
      logCounts,
      stallCauses,
    };
  } finally {
    agent.destroy();
    await reference.close();
    for (const p of procs) {
      p.proc.signal("SIGCONT");
      p.proc.signal("SIGKILL");
    }
    await Promise.all(procs.map((p) => p.proc.exited));
    rmSync(home, { recursive: true, force: true });
  }
}

export function formatSummary(s: SoakSummary): string {
  const lines = [
    `soak: ${s.requests} requests in ${(s.wallMs / 1000).toFixed(1)} s`,
    "outcomes:",
    ...Object.entries(s.outcomes)
      .sort((a, b) => b[1] - a[1])
      .map(([k, v]) => `  ${k.padEnd(40)} ${v}`),
    "faults:",
    ...s.faults.map(
      (f) =>
        `  ${f.name}: at request ${f.atRequest}, recovered in ${f.ms} ms; overlapping requests: ${Object.entries(
          f.outcomes,
        )
          .map(([k, v]) => `${k} ${v}`)
          .join(", ")}`,
    ),
    `after the run: ${Object.entries(s.final)
      .map(([k, v]) => `${k}=${v}`)
      .join(" ")}`,
    `streams stalled for want of credit: ${Object.entries(s.stalls)
      .map(([k, v]) => `${k} ${v}`)
      .join(", ")}`,
    ...Object.entries(s.stallCauses).map(([k, v]) => `  ${v} x ${k}`),
    `RSS (bound ${s.rssBoundMiB} MiB growth):`,
    ...s.rss.map(
      (r) =>
        `  ${r.process.padEnd(10)} requests ${r.fromRequest}..${r.toRequest}: ${r.startMiB} -> ${r.endMiB} MiB (${r.growthMiB >= 0 ? "+" : ""}${r.growthMiB})`,
    ),
    "warnings and errors logged:",
    ...Object.entries(s.logCounts)
      .sort((a, b) => b[1] - a[1])
      .map(([k, v]) => `  ${v} x ${k}`),
    s.violations.length === 0 ? "violations: none" : `violations (${s.violations.length}):`,
    ...s.violations.slice(0, 50).map((v) => `  ${v}`),
  ];
  return lines.join("\n");
}

if (import.meta.main) {
  const { values } = parseArgs({
    options: {
      requests: { type: "string", default: "5000" },
      concurrency: { type: "string", default: "16" },
      seed: { type: "string", default: "1" },
      json: { type: "boolean", default: false },
    },
  });
  const summary = await runSoak({
    requests: Number(values.requests),
    concurrency: Number(values.concurrency),
    seed: Number(values.seed),
    log: (line) => process.stderr.write(`[${new Date().toISOString().slice(11, 19)}] ${line}\n`),
  });
  process.stdout.write(values.json ? `${JSON.stringify(summary, null, 2)}\n` : `${formatSummary(summary)}\n`);
  process.exitCode = summary.violations.length === 0 ? 0 : 1;
}
