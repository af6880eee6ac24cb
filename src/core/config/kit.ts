/**
 * @module Builders for configuration settings. Each builder returns one
 * valibot schema that reads the raw text of a setting (from a flag, the
 * environment or a .env file) and outputs its typed value, with the
 * setting's name, variable, flag and documentation attached as metadata.
 * The node's settings table (schema.ts) and the router's
 * (src/router/settings.ts) are made only of these.
 */
import * as v from "valibot";
import { Secret } from "../secret.ts";

export const GROUPS = [
  "Enrollment",
  "Engine",
  "Auto-configuration",
  "Quantization",
  "Speculative decoding",
  "CUDA graphs",
  "MoE kernel tuning",
  "Flow control",
  "Lease",
  "Model cache and pull",
  "LMCache",
  "Tenant isolation",
  "Logging and metrics",
  "HTTP servers",
] as const;
export type Group = (typeof GROUPS)[number];

export type SettingMeta = {
  /** The environment variable, e.g. XEROTIER_AGENT_LOG_LEVEL. */
  env: string;
  group: Group;
  doc: string;
  /** Long flag without dashes; derived from the variable when omitted. */
  flag?: string;
  /** Never printed: shown as *** by `xim config`, [redacted] in logs. */
  secret?: boolean;
  /** The default as documented, for defaults computed at load time ("$XDG_CONFIG_HOME/xerotier", "auto"). */
  defaultText?: string;
  /** A default that depends on the environment (paths); filled by the loader before validation. */
  computeDefault?: (env: Record<string, string | undefined>) => string;
  /** Repeatable flag whose values form a list (--vllm-arg=... --vllm-arg=...). */
  repeatable?: boolean;
  /** The flag's value as --help shows it (`--http-port <port>`); "value" when omitted. */
  argName?: string;
};

/** A setting of a table without groups: the router's (`xim router serve`). */
export type UngroupedSettingMeta = Omit<SettingMeta, "group"> & { group?: undefined };

/** The metadata of a setting of either table. */
export type AnySettingMeta = SettingMeta | UngroupedSettingMeta;

/** A raw value as the sources give it: text, or a list from a repeatable flag. */
export type RawValue = string | string[];

const TRUE_WORDS = ["1", "true", "yes", "on"];
const FALSE_WORDS = ["0", "false", "no", "off"];

function text(): v.GenericSchema<RawValue, string> {
  return v.pipe(
    v.union([v.string(), v.array(v.string())]),
    v.transform((raw) => (Array.isArray(raw) ? raw[raw.length - 1] : raw).trim()),
  );
}

function withMeta<T extends v.GenericSchema>(schema: T, meta: AnySettingMeta) {
  return v.pipe(schema, v.metadata(meta));
}

export function bool(meta: AnySettingMeta, def: boolean) {
  return withMeta(
    v.optional(
      v.pipe(
        text(),
        v.toLowerCase(),
        v.picklist([...TRUE_WORDS, ...FALSE_WORDS], "expected a boolean: 1/0, true/false, yes/no or on/off"),
        v.transform((word) => TRUE_WORDS.includes(word)),
      ),
      def ? "true" : "false",
    ),
    meta,
  );
}

interface NumberRange {
  min: number;
  max?: number;
  /** Exclusive lower bound (sizes must be > 0). */
  minExclusive?: boolean;
  integer?: boolean;
  unit?: string;
}

function describeRange(r: NumberRange): string {
  const kind = r.integer ? "an integer" : "a number";
  const unit = r.unit ? ` ${r.unit}` : "";
  if (r.max === undefined)
    return `${kind}${r.minExclusive ? " greater than" : " of at least"} ${r.min}${unit}`;
  if (!r.integer && r.min === 0 && r.max === 1) return "a fraction from 0.0 to 1.0";
  return `${kind} from ${r.min} to ${r.max}${unit}`;
}

function numberSchema(r: NumberRange) {
  const expected = `expected ${describeRange(r)}`;
  return v.pipe(
    text(),
    v.regex(/^[+-]?(\d+\.?\d*|\.\d+)$/, expected),
    v.transform(Number),
    v.number(expected),
    v.check(
      (n) =>
        (!r.integer || Number.isInteger(n)) &&
        (r.minExclusive ? n > r.min : n >= r.min) &&
        (r.max === undefined || n <= r.max),
      expected,
    ),
  );
}

export function int(meta: AnySettingMeta, range: Omit<NumberRange, "integer">, def: number) {
  return withMeta(v.optional(numberSchema({ ...range, integer: true }), String(def)), meta);
}

/** An integer that may be left unset (the feature it configures is then off: say so in `defaultText`). */
export function optionalInt(meta: AnySettingMeta, range: Omit<NumberRange, "integer">) {
  return withMeta(v.optional(numberSchema({ ...range, integer: true })), meta);
}

export function fraction(meta: AnySettingMeta, def: number) {
  return withMeta(v.optional(numberSchema({ min: 0, max: 1 }), String(def)), meta);
}

/**
 * A value where absence or the word "auto" (and 0, with zeroIsAuto) means
 * "computed at run time"; anything else must pass `inner`, whose first
 * message is reported.
 */
function autoValue<T>(inner: v.GenericSchema<RawValue, T>, zeroIsAuto = false) {
  return v.pipe(
    text(),
    v.rawTransform(({ dataset, addIssue, NEVER }) => {
      const s = dataset.value;
      if (s.toLowerCase() === "auto" || (zeroIsAuto && s === "0")) return undefined;
      const parsed = v.safeParse(inner, s);
      if (parsed.success) return parsed.output;
      addIssue({ message: parsed.issues[0].message });
      return NEVER;
    }),
  );
}

/** An integer whose absence (or "auto", or 0 when zeroIsAuto) means "computed at run time". */
export function autoInt(
  meta: SettingMeta,
  range: Omit<NumberRange, "integer">,
  opts: { zeroIsAuto?: boolean } = {},
) {
  return withMeta(v.optional(autoValue(numberSchema({ ...range, integer: true }), opts.zeroIsAuto)), {
    defaultText: "auto",
    ...meta,
  });
}

export function port(meta: SettingMeta, def: number) {
  return int(meta, { min: 1, max: 65535 }, def);
}

export function choice<const T extends readonly [string, ...string[]]>(
  meta: SettingMeta,
  values: T,
  def: T[number],
) {
  return withMeta(
    v.optional(
      v.pipe(text(), v.toLowerCase(), v.picklist(values, `expected one of: ${values.join(", ")}`)),
      def,
    ),
    meta,
  );
}

/** A choice with no default; absent (or "auto") means the planner decides. */
export function autoChoice<const T extends readonly [string, ...string[]]>(meta: SettingMeta, values: T) {
  const inner = v.pipe(
    text(),
    v.toLowerCase(),
    v.picklist(values, `expected "auto" or one of: ${values.join(", ")}`),
  );
  return withMeta(v.optional(autoValue(inner)), { defaultText: "auto", ...meta });
}

export function optionalString(meta: AnySettingMeta) {
  return withMeta(v.optional(text()), meta);
}

export function stringWithDefault(meta: AnySettingMeta, def: string) {
  return withMeta(v.optional(v.pipe(text(), v.minLength(1, "expected a non-empty value")), def), meta);
}

/** HOST:PORT ([v6]:PORT; an empty host is 0.0.0.0), a listening address; port 0 lets the OS choose. */
export function listenAddress(meta: AnySettingMeta, def: string) {
  const expected = "expected HOST:PORT with a port from 0 to 65535 (e.g. 0.0.0.0:8443 or [::1]:8443)";
  return withMeta(
    v.optional(
      v.pipe(
        text(),
        v.rawTransform(({ dataset, addIssue, NEVER }) => {
          const m = /^(?:\[([^\]]+)\]|([^:]*)):(\d{1,5})$/.exec(dataset.value);
          const port = Number(m?.[3]);
          if (!m || port > 65535) {
            addIssue({ message: expected });
            return NEVER;
          }
          return { host: m[1] ?? (m[2] || "0.0.0.0"), port };
        }),
      ),
      def,
    ),
    meta,
  );
}

/** A path whose default depends on the environment; the loader always supplies a value. */
export function computedPath(
  meta: SettingMeta & { computeDefault: NonNullable<SettingMeta["computeDefault"]> },
) {
  return withMeta(v.pipe(text(), v.minLength(1, "expected a path")), meta);
}

function secretText() {
  return v.pipe(
    text(),
    v.transform((s) => new Secret(s)),
  );
}

export function secret(meta: Omit<SettingMeta, "secret">) {
  return withMeta(v.optional(secretText()), { ...meta, secret: true });
}

export function secretWithDefault(meta: Omit<SettingMeta, "secret">, def: string) {
  return withMeta(v.optional(secretText(), def), { ...meta, secret: true });
}

/**
 * Split a command-line-like string into words as a POSIX shell would for
 * plain words and quotes: "--x 'a b'" -> ["--x", "a b"], --x="a b" ->
 * ["--x=a b"]. No expansion of variables or globs. Used for
 * XEROTIER_AGENT_VLLM_ARGS and XEROTIER_AGENT_VLLM_ENV.
 */
export function splitWords(input: string): string[] {
  const words: string[] = [];
  let word = "";
  let started = false;
  let quote: '"' | "'" | undefined;
  for (let i = 0; i < input.length; i++) {
    const ch = input[i];
    if (quote) {
      if (ch === quote) quote = undefined;
      else if (ch === "\\" && quote === '"' && i + 1 < input.length) word += input[++i];
      else word += ch;
    } else if (ch === '"' || ch === "'") {
      quote = ch;
      started = true;
    } else if (ch === "\\" && i + 1 < input.length) {
      word += input[++i];
      started = true;
    } else if (/\s/.test(ch)) {
      if (started) words.push(word);
      word = "";
      started = false;
    } else {
      word += ch;
      started = true;
    }
  }
  if (started) words.push(word);
  return words;
}

/** Extra engine arguments: a space-separated string (env) or repeated flags. */
export function argList(meta: SettingMeta) {
  return withMeta(
    v.optional(
      v.pipe(
        v.union([v.string(), v.array(v.string())]),
        v.transform((raw) => (Array.isArray(raw) ? raw : splitWords(raw))),
      ),
      [],
    ),
    { repeatable: true, ...meta },
  );
}

/** Extra engine environment: space-separated KEY=VALUE pairs; empty values are skipped. */
export function envAssignments(meta: SettingMeta) {
  const pair = /^[A-Za-z_][A-Za-z0-9_]*=.*$/;
  return withMeta(
    v.optional(
      v.pipe(
        v.union([v.string(), v.array(v.string())]),
        v.transform((raw) => (Array.isArray(raw) ? raw : splitWords(raw))),
        v.array(v.pipe(v.string(), v.regex(pair, "expected KEY=VALUE pairs separated by spaces"))),
        v.transform((pairs) => {
          const out: Record<string, string> = {};
          for (const p of pairs) {
            const i = p.indexOf("=");
            const value = p.slice(i + 1);
            if (value !== "") out[p.slice(0, i)] = value;
          }
          return out;
        }),
      ),
      [],
    ),
    { repeatable: true, ...meta },
  );
}
