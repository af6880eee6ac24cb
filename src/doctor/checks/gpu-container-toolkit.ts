/**
 * @module gpu-container-toolkit: inside a container, did the NVIDIA runtime
 * hook give it the GPUs? Its traces are NVIDIA_VISIBLE_DEVICES, the
 * /dev/nvidiactl node and /proc/driver/nvidia it mounts; where
 * `nvidia-container-cli` is installed, `nvidia-container-cli info` must
 * reach the driver (a non-zero exit means the toolkit cannot).
 */
import { join } from "node:path";
import { firstLine, runTool } from "../../hardware/run-tool.ts";
import { type Check, fail, ok, skipped } from "../check.ts";
import { statOrUndefined } from "../fs-probe.ts";
import { isContainer, readText } from "../proc.ts";

/** The header and devices of `nvidia-container-cli info`. */
export function parseContainerCliInfo(text: string): { nvrm?: string; cuda?: string; models: string[] } {
  const nvrm = /^NVRM version:\s*(\S+)/m.exec(text)?.[1];
  const cuda = /^CUDA version:\s*(\S+)/m.exec(text)?.[1];
  const models = [...text.matchAll(/^Model:\s*(.+)$/gm)].map((m) => m[1].trim());
  return { nvrm, cuda, models };
}

export const gpuContainerToolkit: Check = {
  id: "gpu-container-toolkit",
  group: "gpu",
  title: "NVIDIA container toolkit (inside a container)",
  async run(ctx, signal) {
    if (!(await isContainer(ctx)))
      return skipped("not in a container (the host's docker runtimes: see gpu-docker-runtime)");
    const cli = await runTool("nvidia-container-cli", ["info"], { env: ctx.env, timeoutMs: 4000, signal });
    if (cli.kind === "ok") {
      const info = parseContainerCliInfo(cli.stdout);
      return ok(
        `nvidia-container-cli info: NVRM ${info.nvrm ?? "?"}, CUDA ${info.cuda ?? "?"}, ${info.models.length} device(s)${info.models.length ? ` (${[...new Set(info.models)].join(", ")})` : ""}`,
      );
    }
    if (cli.kind === "failed" || cli.kind === "timeout") {
      const said = cli.kind === "failed" ? firstLine(`${cli.stderr}\n${cli.stdout}`) : "";
      return fail(
        `nvidia-container-cli info ${cli.kind === "timeout" ? "hung" : "failed"} (${cli.reason})${said ? `: ${said}` : ""}`,
        "The toolkit cannot reach the driver: on the host check that `nvidia-smi` answers, then `sudo nvidia-ctk runtime configure --runtime=docker && sudo systemctl restart docker` and recreate the container; `nvidia-container-cli -k -d /dev/tty info` shows the details.",
      );
    }
    const visible = ctx.env.NVIDIA_VISIBLE_DEVICES;
    const ctl = await statOrUndefined(join(ctx.devRoot, "nvidiactl"));
    const driver = await readText(join(ctx.procRoot, "driver", "nvidia", "version"));
    const traces = [
      visible ? `NVIDIA_VISIBLE_DEVICES=${visible}` : "",
      ctl ? join(ctx.devRoot, "nvidiactl") : "",
      driver
        ? `${join(ctx.procRoot, "driver/nvidia/version")} (${/Kernel Module\s+(\S+)/.exec(driver)?.[1] ?? "present"})`
        : "",
    ].filter(Boolean);
    if (visible && visible !== "void" && visible !== "none" && !ctl) {
      return fail(
        `NVIDIA_VISIBLE_DEVICES=${visible} is set but the runtime hook did not run: no ${join(ctx.devRoot, "nvidiactl")}${driver ? "" : ", no /proc/driver/nvidia"}`,
        "Start the container with the NVIDIA runtime: `docker run --gpus all ...` (compose: `deploy.resources.reservations.devices` with `capabilities: [gpu]`); register it on the host with `sudo nvidia-ctk runtime configure --runtime=docker && sudo systemctl restart docker`.",
      );
    }
    if (traces.length === 0)
      return skipped("no GPU was given to this container (no NVIDIA_VISIBLE_DEVICES, no /dev/nvidiactl)");
    return ok(`runtime hook traces: ${traces.join(", ")}`);
  },
};
