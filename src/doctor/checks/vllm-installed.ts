/**
 * @module vllm-installed: the vLLM launcher (XEROTIER_AGENT_VLLM_PATH, `vllm`
 * on PATH by default) exists and `--version` answers. A cold Python import
 * can take seconds, so a slow answer is a warning, not a failure.
 */
import { firstLine, runTool, which } from "../../hardware/run-tool.ts";
import { type Check, fail, ok, skipped, warn } from "../check.ts";

export const VLLM_VERSION_TIMEOUT_MS = 8000;

export const vllmInstalled: Check = {
  id: "vllm-installed",
  group: "engine",
  title: "vLLM installed",
  timeoutMs: VLLM_VERSION_TIMEOUT_MS + 1000,
  async run(ctx, signal) {
    if (ctx.config.engine === "sim")
      return skipped("the engine is the simulator (XEROTIER_AGENT_ENGINE=sim)");
    const launcher = ctx.config.vllmPath;
    const path = await which(launcher, ctx.env);
    if (!path) {
      return fail(
        `${launcher} not found${launcher.includes("/") ? "" : " on PATH"} (XEROTIER_AGENT_VLLM_PATH=${launcher})`,
        "Install vLLM (`pip install vllm`, or use the Xerotier vLLM image), or point XEROTIER_AGENT_VLLM_PATH at the launcher (e.g. /usr/local/bin/xerotier-vllm); XEROTIER_AGENT_ENGINE=sim runs without it.",
      );
    }
    const r = await runTool(path, ["--version"], {
      env: ctx.env,
      timeoutMs: VLLM_VERSION_TIMEOUT_MS,
      signal,
    });
    if (r.kind === "timeout") {
      return warn(
        `${path} --version did not answer within ${VLLM_VERSION_TIMEOUT_MS / 1000} s`,
        `Run \`${path} --version\` by hand to see whether it starts.`,
      );
    }
    if (r.kind !== "ok") {
      const said = r.kind === "failed" ? firstLine(`${r.stderr}\n${r.stdout}`) : "";
      return fail(
        `${path} --version failed (${r.reason})${said ? `: ${said}` : ""}`,
        `Run \`${path} --version\` to see the whole error; reinstall vLLM in its Python environment.`,
      );
    }
    const version = r.stdout.trim().split("\n").filter(Boolean).pop() ?? "";
    return ok(`${path}: vLLM ${version}`);
  },
};
