/**
 * @module Builds the commander program from the command table and runs it.
 * Owns argument parsing, --help text (each setting flag shows its
 * XEROTIER_AGENT_* variable and default), usage errors with suggestions
 * (exit 2), and the single top-level error handler: a coded XimError prints
 * `xim: <message>` and its hint and exits with its code; anything else is
 * a bug and prints its stack.
 */
import { Command, CommanderError, Help, InvalidArgumentError, Option } from "commander";
import { GROUPS, type RawValue } from "../core/config/kit.ts";
import { type LoadedConfig, loadConfig, settingByKey } from "../core/config/load.ts";
import type { SettingKey } from "../core/config/schema.ts";
import { ExitCode, isXimError, UsageError } from "../core/errors.ts";
import { createLogger, type Logger } from "../core/log.ts";
import { redactUrlCredentials } from "../core/secret.ts";
import { nearest } from "../core/suggest.ts";
import type { AnyCommandSpec, CommandContext, OptionSpec } from "./command.ts";
import type { Io } from "./io.ts";
import { terminalSafeIo } from "./output.ts";
import { settingDescription, settingFlagSyntax } from "./setting-help.ts";

const EXIT_CODES_HELP = `
Exit codes:
  0   success
  1   failure (the message says what failed)
  2   usage error (unknown subcommand or flag, missing argument)
  3-12 xim enroll: the join key or the router was refused (see 'xim enroll --help')
  13  xim run: the router's operator revoked this node (enroll again with a new join key)
  78  configuration error (a setting has a bad value; each problem is named)`;

/** How --help presents a command's settings: the common few, or all of them grouped. */
interface HelpMode {
  all: boolean;
}

function settingOption(key: SettingKey): Option {
  const info = settingByKey.get(key);
  if (!info) throw new Error(`unknown setting ${key}`);
  const option = new Option(settingFlagSyntax(info), settingDescription(info));
  if (info.repeatable)
    option.argParser((value: string, prev: unknown) => [...((prev as string[]) ?? []), value]);
  return option;
}

/** A secret's `--<flag>-file PATH`: the secret read from a file instead of argv. */
function secretFileOption(key: SettingKey): Option | undefined {
  const info = settingByKey.get(key);
  if (!info?.fileFlag || !info.fileEnv) return undefined;
  return new Option(
    `--${info.fileFlag} <path>`,
    `read --${info.flag} from this file (mode 0600; trimmed), keeping it off the command line (env: ${info.fileEnv})`,
  );
}

function camelCase(flag: string): string {
  return flag.replace(/-([a-z0-9])/g, (_m, c: string) => c.toUpperCase());
}

/** The raw flag values of the settings a command declares, as text for the config loader. */
function settingFlags(spec: AnyCommandSpec, opts: Record<string, unknown>) {
  const flags: Partial<Record<SettingKey, RawValue>> = {};
  const fileFlags: Partial<Record<SettingKey, string>> = {};
  for (const key of spec.settings ?? []) {
    const info = settingByKey.get(key);
    if (!info) continue;
    const file = info.fileFlag ? opts[camelCase(info.fileFlag)] : undefined;
    if (typeof file === "string") fileFlags[key] = file;
    const value = opts[camelCase(info.flag)];
    if (value === undefined) continue;
    flags[key] = value === true ? "true" : Array.isArray(value) ? value.map(String) : String(value);
  }
  return { flags, fileFlags };
}

/**
 * The command's own options, added to commander; returns each one's name in
 * `ctx.options` with commander's attribute name for it (`--no-wait` is `wait`).
 */
function addOwnOptions(cmd: Command, spec: AnyCommandSpec): Map<string, string> {
  const names = new Map<string, string>();
  for (const [name, o] of Object.entries<OptionSpec>(spec.options ?? {})) {
    const option = new Option(o.flags, o.description);
    if (o.default !== undefined) option.default(o.default);
    const parse = o.parse;
    if (parse) {
      // A parser's Error becomes commander's usage error (exit 2), as OptionSpec promises.
      option.argParser((value: string, previous: unknown) => {
        try {
          return parse(value, previous);
        } catch (err) {
          throw err instanceof InvalidArgumentError ? err : new InvalidArgumentError((err as Error).message);
        }
      });
    }
    cmd.addOption(option);
    names.set(name, option.attributeName());
  }
  return names;
}

interface Runner {
  pending?: Promise<number>;
}

function buildCommand(
  spec: AnyCommandSpec,
  io: Io,
  runner: Runner,
  parentPath: string,
  help: HelpMode,
): Command {
  const cmd = new Command(spec.name).description(spec.summary);
  const path = `${parentPath} ${spec.name}`;
  const width = io.columns ?? 80;
  if (spec.description) cmd.addHelpText("after", `\n${wrapParagraph(spec.description, width)}`);
  for (const a of spec.arguments ?? []) cmd.argument(a);
  const ownOptions = addOwnOptions(cmd, spec);
  addSettingOptions(cmd, spec, help, path.trim(), io);
  if (spec.examples.length > 0) {
    cmd.addHelpText("after", `\nExamples:\n${spec.examples.map((e) => `  $ ${e}`).join("\n")}`);
  }
  for (const sub of spec.subcommands ?? []) {
    cmd.addCommand(buildCommand(sub, io, runner, path, help), { hidden: sub.hidden });
  }
  if (spec.subcommands?.length && !spec.run) {
    cmd.argument("[subcommand]");
    cmd.action((sub: string | undefined) => {
      const names = spec.subcommands?.filter((s) => !s.hidden).map((s) => s.name) ?? [];
      if (sub === undefined) {
        throw new UsageError(
          `${path.trim()} needs a subcommand: ${names.join(", ")}`,
          `Run '${path.trim()} --help'.`,
        );
      }
      throw unknownCommand(sub, names, path.trim());
    });
  } else if (spec.run) {
    const run = spec.run;
    cmd.action((...actionArgs: unknown[]) => {
      const command = actionArgs[actionArgs.length - 1] as Command;
      runner.pending = run(commandContext(spec, command, ownOptions, io));
    });
  }
  return cmd;
}

/**
 * What a command's `run` receives: its own options under their declared
 * names (`ownOptions`: name -> commander's attribute), its positional
 * arguments, and the configuration and logger, loaded on first use.
 */
function commandContext(
  spec: AnyCommandSpec,
  command: Command,
  ownOptions: Map<string, string>,
  io: Io,
): CommandContext<Record<string, unknown>> {
  const all = { ...optionsTakenByParents(command), ...definedOptions(command) };
  const options = Object.fromEntries(
    [...ownOptions].map(([name, attribute]) => [name, all[attribute]] as const),
  );
  let loaded: LoadedConfig | undefined;
  let logger: Logger | undefined;
  const ctx: CommandContext<Record<string, unknown>> = {
    io,
    options,
    args: command.args.slice(0, spec.arguments?.length ?? 0),
    config: () => {
      if (!loaded) loaded = loadConfig({ ...settingFlags(spec, all), env: io.env, cwd: io.cwd });
      return loaded;
    },
    logger: () => {
      if (!logger) {
        const { config, warnings } = ctx.config();
        logger = createLogger({ level: config.logLevel });
        for (const w of warnings) logger.warn(w);
      }
      return logger;
    },
  };
  return ctx;
}

/**
 * Every setting a command takes is a flag; plain --help shows only its common
 * ones (a 60-line flag list hides the two a user came for), --help-all shows
 * every one under the Xerotier documentation's group headings.
 */
function addSettingOptions(cmd: Command, spec: AnyCommandSpec, help: HelpMode, path: string, io: Io): void {
  const settings = spec.settings ?? [];
  const common = new Set(spec.commonSettings ?? settings);
  const ordered = help.all ? [...settings].sort((a, b) => groupIndex(a) - groupIndex(b)) : settings;
  for (const key of ordered) {
    // A secret's --<flag>-file form sits beside it, shown and grouped alike.
    const options = [settingOption(key), secretFileOption(key)].filter((o) => o !== undefined);
    for (const option of options) {
      if (help.all) option.helpGroup(`${settingByKey.get(key)?.group ?? "Other"} settings:`);
      else if (!common.has(key)) option.hideHelp();
      cmd.addOption(option);
    }
  }
  const hidden = settings.length - common.size;
  if (!help.all && hidden > 0) {
    cmd.addHelpText(
      "after",
      `\n${wrapParagraph(`${hidden} more settings are flags too: '${path} --help-all' lists them all, grouped; 'xim config' shows their values.`, io.columns ?? 80)}`,
    );
  }
}

/**
 * Help wrapped to the terminal (80 columns in a pipe). commander wraps a
 * description beside its flag only when 40 columns are left; a long flag
 * (`--engine-startup-timeout-seconds <value>`) would leave every line
 * unwrapped, so such a description goes under its flag instead.
 */
function helpLayout(width: number): Partial<Help> {
  return {
    helpWidth: width,
    formatItem(term, termWidth, description, helper) {
      if (!description || width - termWidth - 4 >= helper.minWidthToWrap) {
        return Help.prototype.formatItem.call(helper, term, termWidth, description, helper);
      }
      return `  ${term}\n${indent(helper.boxWrap(description, width - 6), 6)}`;
    },
  };
}

/** Wrap a paragraph for the help text's "after" sections, which commander prints as given. */
function wrapParagraph(text: string, width: number): string {
  return new Help().boxWrap(text, width);
}

function indent(text: string, spaces: number): string {
  return text.replace(/^/gm, " ".repeat(spaces));
}

function groupIndex(key: SettingKey): number {
  const group = settingByKey.get(key)?.group;
  return group === undefined ? GROUPS.length : GROUPS.indexOf(group);
}

function definedOptions(command: Command): Record<string, unknown> {
  return Object.fromEntries(Object.entries(command.opts()).filter(([, value]) => value !== undefined));
}

/**
 * The values of this command's options that commander gave to a parent
 * declaring the same flag: a parent that runs too (`router nodes --state`)
 * takes its flags wherever they stand, also after a subcommand's name
 * (`router nodes revoke ID --state DIR`).
 */
function optionsTakenByParents(command: Command): Record<string, unknown> {
  const own = new Set(command.options.map((o) => o.attributeName()));
  const taken: Record<string, unknown> = {};
  for (let parent = command.parent; parent; parent = parent.parent)
    for (const [key, value] of Object.entries(definedOptions(parent)))
      if (own.has(key) && !(key in taken)) taken[key] = value;
  return taken;
}

function unknownCommand(word: string, names: string[], path: string): UsageError {
  const guess = nearest(word, names);
  return new UsageError(
    `unknown command '${word}'${guess ? `. Did you mean '${path} ${guess}'?` : ""}`,
    `Commands: ${names.join(", ")}. Run '${path} --help' for details.`,
  );
}

export interface RootSpec {
  version: () => string;
  verboseVersion: (io: Io) => Promise<string>;
  commands: readonly AnyCommandSpec[];
}

/** Parse argv, run the chosen command, and return the process exit code. */
export async function runCli(argv: string[], rawIo: Io, root: RootSpec): Promise<number> {
  // Everything a command prints, errors included, may carry a peer's text: guard it once, here.
  const io = terminalSafeIo(rawIo);
  const runner: Runner = {};
  // --help-all is --help with every setting shown; commander never sees it.
  const help: HelpMode = { all: argv.includes("--help-all") };
  if (help.all) argv = argv.map((a) => (a === "--help-all" ? "--help" : a));
  const program = new Command("xim")
    .description(
      "xim turns this machine into an inference node of a router mesh: enroll with a join key, then `xim run`.",
    )
    .option("-V, --version", "print the version (with --verbose: runtime, libzmq and CURVE)")
    .option("--verbose", "more detail (with --version)")
    .argument("[command]")
    .usage("[options] <command> [command options]")
    .addHelpText("after", EXIT_CODES_HELP)
    .showSuggestionAfterError(true)
    .configureOutput({ writeOut: io.stdout, writeErr: io.stderr });
  for (const spec of root.commands)
    program.addCommand(buildCommand(spec, io, runner, "xim", help), { hidden: spec.hidden });
  program.action(async (word: string | undefined, opts: { version?: boolean; verbose?: boolean }) => {
    if (word !== undefined) {
      throw unknownCommand(
        word,
        root.commands.filter((c) => !c.hidden).map((c) => c.name),
        "xim",
      );
    }
    if (opts.version) {
      io.stdout(opts.verbose ? await root.verboseVersion(io) : `xim ${root.version()}\n`);
      runner.pending = Promise.resolve(ExitCode.ok);
      return;
    }
    program.outputHelp({ error: true });
    runner.pending = Promise.resolve(ExitCode.usage);
  });
  // Every command (and its subcommands) reports parse errors instead of exiting.
  const applyOverride = (c: Command) => {
    c.exitOverride();
    c.configureOutput({ writeOut: io.stdout, writeErr: io.stderr });
    c.configureHelp(helpLayout(io.columns ?? 80));
    for (const sub of c.commands) applyOverride(sub);
  };
  applyOverride(program);

  try {
    await program.parseAsync(argv, { from: "user" });
    return await (runner.pending ?? Promise.resolve(ExitCode.ok));
  } catch (err) {
    return reportError(err, io);
  }
}

export function reportError(err: unknown, io: Io): number {
  if (err instanceof CommanderError) {
    if (
      err.code === "commander.helpDisplayed" ||
      err.code === "commander.help" ||
      err.code === "commander.version"
    ) {
      return ExitCode.ok;
    }
    // commander already printed "error: ..." with its own suggestion.
    return ExitCode.usage;
  }
  // An address a person typed or configured may carry a password or token.
  if (isXimError(err)) {
    io.stderr(`xim: ${redactUrlCredentials(err.message)}\n`);
    if (err.hint) io.stderr(`hint: ${redactUrlCredentials(err.hint)}\n`);
    return err.exitCode;
  }
  const stack = redactUrlCredentials(err instanceof Error ? (err.stack ?? err.message) : String(err));
  io.stderr(`xim: internal error (this is a bug; please report it with the lines below)\n${stack}\n`);
  return ExitCode.failure;
}
