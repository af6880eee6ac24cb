/**
 * Readers for the deployment files the tests check without a Docker engine:
 * Dockerfile instructions, compose interpolations, and the leading comment
 * block of a file (where every variable must be documented).
 */
import { readdirSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { ROOT } from "../../scripts/build.ts";

export const DEPLOY = join(ROOT, "deploy");

export function filesIn(folder: string, pattern: RegExp): string[] {
  return readdirSync(join(DEPLOY, folder))
    .filter((f) => pattern.test(f))
    .sort()
    .map((f) => join(DEPLOY, folder, f));
}

export interface Instruction {
  keyword: string;
  args: string;
  line: number;
}

/** Dockerfile instructions, continuation lines joined and comments dropped. */
export function dockerInstructions(text: string): Instruction[] {
  const out: Instruction[] = [];
  const lines = text.split("\n");
  for (let i = 0; i < lines.length; i++) {
    const first = lines[i];
    if (/^\s*(#|$)/.test(first)) continue;
    const start = i;
    let joined = first;
    while (/\\\s*$/.test(joined) && i + 1 < lines.length) {
      i++;
      if (/^\s*#/.test(lines[i])) continue;
      joined = `${joined.replace(/\\\s*$/, "")} ${lines[i].trim()}`;
    }
    const m = /^\s*([A-Za-z]+)\s+(.*)$/.exec(joined);
    if (m) out.push({ keyword: m[1].toUpperCase(), args: m[2].trim(), line: start + 1 });
  }
  return out;
}

/** ARG defaults declared anywhere in the Dockerfile (first one wins). */
export function argDefaults(instructions: Instruction[]): Map<string, string> {
  const args = new Map<string, string>();
  for (const ins of instructions) {
    if (ins.keyword !== "ARG") continue;
    const m = /^([A-Za-z_][A-Za-z0-9_]*)(?:=(.*))?$/.exec(ins.args);
    if (m && !args.has(m[1])) args.set(m[1], (m[2] ?? "").replace(/^"(.*)"$/, "$1"));
  }
  return args;
}

export function expandArgs(value: string, args: Map<string, string>): string {
  return value.replace(/\$\{([A-Za-z_][A-Za-z0-9_]*)\}|\$([A-Za-z_][A-Za-z0-9_]*)/g, (_, a, b) => {
    const name = a ?? b;
    const v = args.get(name);
    if (v === undefined) throw new Error(`\${${name}} is not a declared ARG`);
    return v;
  });
}

/** The comment block a file opens with. */
export function header(text: string): string {
  const lines: string[] = [];
  for (const line of text.split("\n")) {
    if (!line.startsWith("#")) break;
    lines.push(line);
  }
  return lines.join("\n");
}

export interface Interpolation {
  name: string;
  /** The default or error text after :- / - / :? / ?, if any. */
  rest: string;
}

/**
 * Every `${NAME...}` / `$NAME` in a compose file, checked the way Compose
 * reads them: `$$` is a literal dollar; anything else after `$` is an error.
 * Defaults may hold further interpolations (`${A:-${B}}`), which are listed too.
 */
export function composeInterpolations(text: string): Interpolation[] {
  const found: Interpolation[] = [];
  const scan = (s: string): void => {
    let i = 0;
    while (i < s.length) {
      if (s[i] !== "$") {
        i++;
        continue;
      }
      const next = s[i + 1];
      if (next === "$") {
        i += 2;
        continue;
      }
      if (next === "{") {
        let depth = 1;
        let j = i + 2;
        while (j < s.length && depth > 0) {
          if (s[j] === "{") depth++;
          else if (s[j] === "}") depth--;
          j++;
        }
        if (depth !== 0) throw new Error(`unclosed \${ at ${s.slice(i, i + 40)}`);
        const body = s.slice(i + 2, j - 1);
        const m = /^([A-Za-z_][A-Za-z0-9_]*)(?:(:?[-?+])([\s\S]*))?$/.exec(body);
        if (!m) throw new Error(`invalid interpolation \${${body}}`);
        found.push({ name: m[1], rest: m[3] ?? "" });
        if (m[3]) scan(m[3]);
        i = j;
        continue;
      }
      const m = /^[A-Za-z_][A-Za-z0-9_]*/.exec(s.slice(i + 1));
      if (!m)
        throw new Error(
          `invalid interpolation at ${JSON.stringify(s.slice(i, i + 20))}: write $$ for a dollar sign`,
        );
      found.push({ name: m[0], rest: "" });
      i += 1 + m[0].length;
    }
  };
  // Comments are not interpolated.
  scan(
    text
      .split("\n")
      .filter((l) => !/^\s*#/.test(l))
      .join("\n"),
  );
  return found;
}

export function read(path: string): string {
  return readFileSync(path, "utf8");
}
