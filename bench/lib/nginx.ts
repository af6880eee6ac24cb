/**
 * @module nginx as a streaming reverse proxy for the benchmark's baseline:
 * the Debian package's binary with a generated config in a temporary
 * folder, `proxy_buffering off` so SSE chunks pass through as they come,
 * keep-alive to the upstream, one worker per core.
 */
import { type ChildProcess, execFileSync, spawn } from "node:child_process";
import { mkdirSync, writeFileSync } from "node:fs";
import net from "node:net";
import { join } from "node:path";
import { cpuCount, pinnedCommand } from "./pin.ts";

export interface Nginx {
  port: number;
  pids: () => number[];
  stop: () => Promise<void>;
}

/** `workers`: one per CPU nginx runs on (`auto` counts the machine's, not the pinned ones). */
export function nginxConfig(dir: string, listenPort: number, upstreamPort: number, workers = "auto"): string {
  return `worker_processes ${workers};
daemon off;
master_process on;
pid ${dir}/nginx.pid;
error_log ${dir}/error.log warn;
events { worker_connections 8192; }
http {
  access_log off;
  client_body_temp_path ${dir}/body;
  proxy_temp_path ${dir}/proxy;
  fastcgi_temp_path ${dir}/fastcgi;
  uwsgi_temp_path ${dir}/uwsgi;
  scgi_temp_path ${dir}/scgi;
  upstream engine { server 127.0.0.1:${upstreamPort}; keepalive 1024; }
  server {
    listen 127.0.0.1:${listenPort};
    location / {
      proxy_pass http://engine;
      proxy_http_version 1.1;
      proxy_set_header Connection "";
      proxy_buffering off;
      proxy_request_buffering off;
      proxy_read_timeout 600s;
    }
  }
}
`;
}

export async function startNginx(
  binary: string,
  dir: string,
  listenPort: number,
  upstreamPort: number,
  cpus?: string,
): Promise<Nginx> {
  mkdirSync(dir, { recursive: true });
  const conf = join(dir, "nginx.conf");
  writeFileSync(conf, nginxConfig(dir, listenPort, upstreamPort, cpus ? String(cpuCount(cpus)) : "auto"));
  const [command, args] = pinnedCommand(binary, ["-c", conf, "-p", dir, "-e", join(dir, "error.log")], cpus);
  const child: ChildProcess = spawn(command, args, { stdio: "ignore" });
  await waitForPort(listenPort, 10_000);
  return {
    port: listenPort,
    pids: () => {
      // The master plus its workers: the workers do the proxying.
      const out = execFileSync("pgrep", ["-P", String(child.pid)], { encoding: "utf8" }).trim();
      return [child.pid as number, ...out.split("\n").filter(Boolean).map(Number)];
    },
    stop: () =>
      new Promise((resolve) => {
        child.once("exit", () => resolve());
        child.kill("SIGQUIT");
      }),
  };
}

export async function waitForPort(port: number, timeoutMs: number): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const ok = await new Promise<boolean>((resolve) => {
      const s = net.connect(port, "127.0.0.1");
      s.once("connect", () => {
        s.destroy();
        resolve(true);
      });
      s.once("error", () => resolve(false));
    });
    if (ok) return;
    if (Date.now() > deadline) throw new Error(`nothing listens on 127.0.0.1:${port} after ${timeoutMs} ms`);
    await new Promise((r) => setTimeout(r, 50));
  }
}
