/**
 * @module The contract of a subcommand. A command is data (name, summary,
 * the configuration settings it takes as flags, its own options, examples)
 * plus a `run` function that receives parsed options and a lazily loaded
 * configuration, and returns an exit code. program.ts turns these into
 * commander commands; main.ts lists them.
 */
import type { LoadedConfig } from "../core/config/load.ts";
import type { SettingKey } from "../core/config/schema.ts";
import type { Logger } from "../core/log.ts";
import type { Io } from "./io.ts";

export interface OptionSpec {
  /** commander flag syntax, e.g. "--json" or "--state <dir>". */
  flags: string;
  description: string;
  default?: string | boolean | number;
  /** Parse the raw text (commander argParser); throw an Error to report a usage error. */
  parse?: (value: string, previous: unknown) => unknown;
}

export interface CommandContext {
  io: Io;
  /** The command's own options (not settings), by commander's camelCase name. */
  options: Record<string, unknown>;
  /** Positional arguments. */
  args: string[];
  /** The configuration (flags > env > .env > defaults); throws ConfigError (exit 78) when invalid. */
  config: () => LoadedConfig;
  /** A logger at the configured level; loads the configuration on first use. */
  logger: () => Logger;
}

export interface CommandSpec {
  name: string;
  summary: string;
  /** Extra paragraphs for --help. */
  description?: string;
  /** Positional arguments in commander syntax: "<name>", "[path]". */
  arguments?: string[];
  /** Configuration settings offered as flags (each shows its variable in --help). */
  settings?: readonly SettingKey[];
  /**
   * The few settings users change first, shown by plain --help; the rest of
   * `settings` still work as flags and are listed by --help-all, grouped as the
   * Xerotier documentation groups them. Unset: --help lists every setting.
   */
  commonSettings?: readonly SettingKey[];
  options?: OptionSpec[];
  examples: string[];
  hidden?: boolean;
  subcommands?: CommandSpec[];
  run?: (ctx: CommandContext) => Promise<number>;
}
