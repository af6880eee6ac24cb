/**
 * @module The Python interpreter that runs vLLM, found from the `vllm`
 * launcher's #! line (else python3 on PATH), so probes ask the same
 * environment the engine will import from (LMCache, quantization methods).
 */
import { readTextHead } from "../../core/bounded-read.ts";
import { type Env, which } from "../../hardware/run-tool.ts";

/** The Python interpreter behind a `vllm` launcher: its #! line, else python3. */
export async function vllmPython(vllmPath: string, env: Env): Promise<string> {
  const resolved = await which(vllmPath, env);
  if (resolved) {
    try {
      // The launcher may be a large binary: read only the first line's worth.
      const head = await readTextHead(resolved, 200, "the vLLM launcher");
      const m = /^#!\s*(\S+)(?:\s+(\S+))?/.exec(head);
      if (m) {
        // "#!/usr/bin/env python3" names the interpreter second.
        const exe = m[1].endsWith("/env") && m[2] ? m[2] : m[1];
        if (/python/.test(exe)) return exe;
      }
    } catch {
      // a binary launcher: fall through
    }
  }
  return "python3";
}
