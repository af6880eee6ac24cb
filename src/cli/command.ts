/**
 * @module The contract of a subcommand. A command is data (name, summary,
 * the configuration settings it takes as flags, its own options, examples)
 * plus a `run` function that receives parsed options and a lazily loaded
 * configuration, and returns an exit code. program.ts turns these into
 * commander commands; main.ts lists them. A command's options are declared
 * once, as named OptionSpecs (src/cli/options.ts builds them): the type of
 * `ctx.options` in its `run` is inferred from that declaration.
 */
import type { LoadedConfig } from "../core/config/load.ts";
import type { SettingKey } from "../core/config/schema.ts";
import type { Logger } from "../core/log.ts";
import type { Io } from "./io.ts";

/** One option of a command; `T` is the type `run` receives for it. */
export interface OptionSpec<T = unknown> {
  /** commander flag syntax, e.g. "--json" or "--state <dir>". */
  flags: string;
  description: string;
  default?: T;
  /** Parse the raw text (commander argParser); throw an Error to report a usage error (exit 2). */
  parse?: (value: string, previous: T | undefined) => T;
}

/** A command's options by the name `run` reads them under. */
// biome-ignore lint/suspicious/noExplicitAny: any option type; each command's own is inferred by defineCommand.
export type OptionSpecs = Record<string, OptionSpec<any>>;

/** The parsed values of a command's options, typed from their declaration. */
export type OptionValues<S extends OptionSpecs> = {
  [K in keyof S]: S[K] extends OptionSpec<infer T> ? T : never;
};

export interface CommandContext<O = Record<never, never>> {
  io: Io;
  /** The command's own options (not settings), under the names its `options` declares. */
  options: O;
  /** Positional arguments. */
  args: string[];
  /** The configuration (flags > env > .env > defaults); throws ConfigError (exit 78) when invalid. */
  config: () => LoadedConfig;
  /** A logger at the configured level; loads the configuration on first use. */
  logger: () => Logger;
}

export interface CommandSpec<O extends OptionSpecs = Record<never, never>> {
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
  options?: O;
  examples: string[];
  hidden?: boolean;
  subcommands?: readonly AnyCommandSpec[];
  run?(ctx: CommandContext<OptionValues<O>>): Promise<number>;
}

/** A command of any options: what tables of commands hold. */
// biome-ignore lint/suspicious/noExplicitAny: a table holds commands whose option types differ.
export type AnyCommandSpec = CommandSpec<any>;

/** Declare a command; its `run` receives options typed from its `options`. */
export function defineCommand<const O extends OptionSpecs = Record<never, never>>(
  spec: CommandSpec<O>,
): CommandSpec<O> {
  return spec;
}
