/**
 * @module The logger: pino JSON lines on stderr (stdout belongs to command
 * output), human-readable through pino-pretty when stderr is a terminal.
 * Secrets cannot reach a line: config secrets are `Secret` objects that
 * serialise as [redacted], and the redaction list below censors the known
 * secret-bearing keys wherever a caller puts them. Each part logs through
 * a child with its `component` name.
 */
import type { Writable } from "node:stream";
import pino, { type Logger } from "pino";
import { prettyFactory } from "pino-pretty";
import { REDACTED } from "./secret.ts";
import { safeText } from "./terminal-text.ts";

export type { Logger };

/** The configuration's level names, mapped to pino's. */
export function pinoLevel(level: string): pino.Level {
  switch (level) {
    case "warning":
    case "warn":
      return "warn";
    case "notice":
      return "info";
    case "critical":
      return "fatal";
    case "trace":
    case "debug":
    case "info":
    case "error":
      return level;
    default:
      return "info";
  }
}

const SECRET_KEYS = [
  "joinKey",
  "join_key",
  "vllmSaltSecret",
  "saltSecret",
  "secretKey",
  "secret_key",
  "token",
  "apiKey",
  "api_key",
  "password",
  "authorization",
  "lmcacheRedisUrl",
];

/** pino redact paths: each secret key at the top level, one level down, and in headers. */
export const REDACT_PATHS = [
  ...SECRET_KEYS,
  ...SECRET_KEYS.map((k) => `*.${k}`),
  ...SECRET_KEYS.map((k) => `*.*.${k}`),
  'headers["authorization"]',
  'req.headers["authorization"]',
];

export interface LoggerOptions {
  level?: string;
  /** Where lines go; defaults to fd 2. Tests pass a recording stream. */
  destination?: Writable | pino.DestinationStream;
  /** Human-readable output; defaults to whether stderr is a terminal. */
  pretty?: boolean;
}

export function createLogger(options: LoggerOptions = {}): Logger {
  const base: pino.LoggerOptions = {
    level: pinoLevel(options.level ?? "info"),
    base: { pid: process.pid },
    redact: { paths: REDACT_PATHS, censor: REDACTED },
    formatters: { level: (label) => ({ level: label }) },
    timestamp: pino.stdTimeFunctions.isoTime,
  };
  const wantPretty = options.pretty ?? (options.destination === undefined && process.stderr.isTTY === true);
  if (wantPretty) {
    const format = prettyFactory({
      colorize: !process.env.NO_COLOR && process.stderr.isTTY === true,
      ignore: "pid,hostname",
      translateTime: "SYS:HH:MM:ss.l",
    });
    const out = options.destination ?? pino.destination({ dest: 2, sync: true });
    // Lines carry peers' text (host names, engine and router messages) to a terminal: cleaned before
    // pino-pretty adds its own colours.
    const write = (line: string) => {
      let record: unknown;
      try {
        record = JSON.parse(line);
      } catch {
        out.write(`${safeText(line, { maxLength: Number.POSITIVE_INFINITY })}\n`);
        return;
      }
      out.write(format(terminalSafeFields(record)));
    };
    return pino(base, { write });
  }
  return pino(base, options.destination ?? pino.destination({ dest: 2, sync: true }));
}

/**
 * Every string of a log record (parsed from pino's JSON) with its terminal
 * control characters replaced (src/core/terminal-text.ts); only stack
 * traces keep their line breaks, so a peer's text cannot forge a log line.
 */
function terminalSafeFields(value: unknown, key = ""): unknown {
  if (typeof value === "string")
    return safeText(value, { keepLines: key === "stack", maxLength: Number.POSITIVE_INFINITY });
  if (Array.isArray(value)) return value.map((item) => terminalSafeFields(item));
  if (value !== null && typeof value === "object")
    return Object.fromEntries(Object.entries(value).map(([k, v]) => [k, terminalSafeFields(v, k)]));
  return value;
}

/** A logger that drops everything: for library calls from tests that do not look at logs. */
export function silentLogger(): Logger {
  return pino({ level: "silent" });
}
