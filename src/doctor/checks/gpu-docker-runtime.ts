/**
 * @module gpu-docker-runtime: on a host with docker and an NVIDIA GPU,
 * docker must know the `nvidia` runtime (`docker info`: "Runtimes: ...
 * nvidia ..."), or `--gpus all` containers get no GPU. Docker needs the
 * socket's permission: without it the check is skipped, not failed.
 */
import { firstLine, runTool } from "../../hardware/run-tool.ts";
import { type Check, ok, skipped, warn } from "../check.ts";
import { probeNvidia } from "../gpu-probe.ts";
import { isContainer } from "../proc.ts";

export function parseDockerRuntimes(text: string): { runtimes: string[]; defaultRuntime?: string } {
  const runtimes = /^\s*Runtimes:\s*(.+)$/m.exec(text)?.[1].trim().split(/\s+/) ?? [];
  const defaultRuntime = /^\s*Default Runtime:\s*(\S+)/m.exec(text)?.[1];
  return { runtimes, defaultRuntime };
}

export const gpuDockerRuntime: Check = {
  id: "gpu-docker-runtime",
  group: "gpu",
  title: "Docker's NVIDIA runtime (on the host)",
  async run(ctx, signal) {
    if (await isContainer(ctx)) return skipped("inside a container (see gpu-container-toolkit)");
    const r = await runTool("docker", ["info"], { env: ctx.env, timeoutMs: 4000, signal });
    if (r.kind === "missing")
      return skipped("docker is not installed (needed only to run xim in a container)");
    if (r.kind === "timeout") return skipped(`docker info did not answer (${r.reason})`);
    const { runtimes, defaultRuntime } = parseDockerRuntimes(r.stdout);
    if (runtimes.length === 0) {
      const why = firstLine(`${r.stderr}\n${r.stdout}`) || (r.kind === "failed" ? r.reason : "exit 0");
      if (/permission denied/i.test(why))
        return skipped(`needs access to the docker socket (root or the docker group): ${why}`);
      return skipped(`docker info gave no runtimes: ${why}`);
    }
    const evidence = `docker runtimes: ${runtimes.join(" ")}${defaultRuntime ? ` (default ${defaultRuntime})` : ""}`;
    if (runtimes.includes("nvidia")) return ok(evidence);
    const nv = await probeNvidia(ctx);
    if (nv.state === "missing") return ok(`${evidence}; no NVIDIA GPU here, so no nvidia runtime is needed`);
    return warn(
      `${evidence}: no nvidia runtime, so containers started with --runtime=nvidia fail and GPUs are not passed through`,
      "Install the NVIDIA Container Toolkit, then `sudo nvidia-ctk runtime configure --runtime=docker && sudo systemctl restart docker`.",
    );
  },
};
