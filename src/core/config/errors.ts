/**
 * @module The configuration error: one line per problem, each naming the
 * variable, the value, what is accepted and where the value came from.
 * Exit code 78 (EX_CONFIG).
 */
import { ExitCode, XimError } from "../errors.ts";

export interface ConfigProblem {
  env: string;
  /** The value as given, or *** for a secret; undefined when the rule is about a missing value. */
  value: string | undefined;
  message: string;
  source: string;
}

export function formatProblem(p: ConfigProblem): string {
  const shown = p.value === undefined ? p.env : `${p.env}=${p.value}`;
  return `${shown} (from ${p.source}): ${p.message}`;
}

export class ConfigError extends XimError {
  readonly problems: ConfigProblem[];

  /** `hint`: the next step, when the settings are not the node's (`xim router serve`'s). */
  constructor(
    problems: ConfigProblem[],
    hint = "Fix the values above; `xim config` prints every setting with its source, `xim --help` lists them.",
  ) {
    const lines = problems.map((p) => `  ${formatProblem(p)}`).join("\n");
    super(
      "XIM_CONFIG",
      `invalid configuration (${problems.length} problem${problems.length === 1 ? "" : "s"}):\n${lines}`,
      {
        exitCode: ExitCode.config,
        hint,
      },
    );
    this.problems = problems;
  }
}
