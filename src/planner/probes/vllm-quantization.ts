/**
 * @module The `--quantization` methods the installed vLLM accepts, asked of
 * its own Python once per plan (`QUANTIZATION_METHODS` of
 * vllm.model_executor.layers.quantization, research vllm.md §0): the list
 * changes between releases (bitsandbytes, hqq and others come and go), so
 * a union of releases lets through a value the installed vLLM refuses.
 * The answer is bounded and validated; any failure means "unknown", and
 * the planner falls back to xim's built-in list and says so.
 */
import { safeText } from "../../core/terminal-text.ts";
import { type Env, runTool } from "../../hardware/run-tool.ts";
import { vllmPython } from "./vllm-python.ts";

/** The line the script prints its answer on (vLLM's import may log to stdout). */
const MARKER = "XIM_QUANTIZATION_METHODS=";
const SCRIPT = [
  "import json",
  "from vllm.model_executor.layers.quantization import QUANTIZATION_METHODS",
  `print(${JSON.stringify(MARKER)} + json.dumps(list(QUANTIZATION_METHODS)))`,
].join("\n");
const METHOD = /^[a-z0-9][a-z0-9_.-]{0,63}$/;
const MAX_METHODS = 256;

export type InstalledQuantization =
  | { kind: "installed"; methods: string[]; python: string }
  | { kind: "unknown"; reason: string };

/** The methods from the script's output, or null when the output is not a bounded list of method names. */
export function parseMethods(stdout: string): string[] | null {
  const line = stdout.split("\n").find((l) => l.startsWith(MARKER));
  if (!line || line.length > 16_384) return null;
  let value: unknown;
  try {
    value = JSON.parse(line.slice(MARKER.length));
  } catch {
    return null;
  }
  if (!Array.isArray(value) || value.length === 0 || value.length > MAX_METHODS) return null;
  if (!value.every((m) => typeof m === "string" && METHOD.test(m))) return null;
  return value as string[];
}

/** Ask vLLM's Python for its quantization methods (importing vLLM loads torch: seconds, hence the generous timeout). */
export async function probeQuantizationMethods(o: {
  vllmPath: string;
  env: Env;
  timeoutMs?: number;
}): Promise<InstalledQuantization> {
  const python = await vllmPython(o.vllmPath, o.env);
  const timeoutMs = o.timeoutMs ?? 60_000;
  const r = await runTool(python, ["-c", SCRIPT], {
    env: { ...o.env, VLLM_LOGGING_LEVEL: "ERROR" },
    timeoutMs,
  });
  if (r.kind === "missing") return { kind: "unknown", reason: `${python} not found` };
  if (r.kind === "timeout")
    return { kind: "unknown", reason: `${python} did not answer in ${timeoutMs / 1000} s` };
  if (r.kind === "failed") {
    // The last line of a Python traceback names the error; it is printed in the plan, so made terminal-safe.
    const last = safeText(
      `${r.stdout}\n${r.stderr}`.split("\n").filter(Boolean).at(-1)?.slice(0, 200) ?? r.reason,
    );
    return { kind: "unknown", reason: `${python} cannot import vLLM's quantization registry (${last})` };
  }
  const methods = parseMethods(r.stdout);
  if (!methods) return { kind: "unknown", reason: `${python} printed no list of quantization methods` };
  return { kind: "installed", methods, python };
}
