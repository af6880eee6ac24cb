/**
 * @module Builders of a command's options (OptionSpec), each typed with the
 * value `run` receives: a switch is `boolean | undefined`, a value with a
 * default is never undefined, a parsed value has its parser's type. A
 * parser's error is a usage error (exit 2) that commander prints with the
 * flag and the value, so a parser's message says what is accepted.
 */
import type { OptionSpec } from "./command.ts";

/** `--json`: true when given. */
export function switchOption(flags: string, description: string): OptionSpec<boolean | undefined> {
  return { flags, description };
}

/** `--no-wait`: commander's negation, true unless given. */
export function negatedSwitch(flags: `--no-${string}`, description: string): OptionSpec<boolean> {
  return { flags, description };
}

/** `--name <name>`: the text as given. */
export function textOption(flags: string, description: string): OptionSpec<string | undefined>;
export function textOption(flags: string, description: string, def: string): OptionSpec<string>;
export function textOption(
  flags: string,
  description: string,
  def?: string,
): OptionSpec<string> | OptionSpec<string | undefined> {
  return def === undefined ? { flags, description } : { flags, description, default: def };
}

/** `--uses <n>`: the text parsed by `parse` (`previous` lets a repeated flag collect). */
export function valueOption<T>(
  flags: string,
  description: string,
  parse: (value: string, previous: T | undefined) => T,
): OptionSpec<T | undefined>;
export function valueOption<T>(
  flags: string,
  description: string,
  parse: (value: string, previous: T | undefined) => T,
  def: T,
): OptionSpec<T>;
export function valueOption<T>(
  flags: string,
  description: string,
  parse: (value: string, previous: T | undefined) => T,
  def?: T,
): OptionSpec<T> | OptionSpec<T | undefined> {
  return def === undefined ? { flags, description, parse } : { flags, description, parse, default: def };
}

/** A repeatable `--host <name>`: every value given, in order. */
export function listOption(flags: string, description: string): OptionSpec<string[] | undefined> {
  return { flags, description, parse: (value, previous) => [...(previous ?? []), value] };
}

/** The usual `--json` of a command that prints for people or scripts. */
export const jsonOption = switchOption("--json", "print JSON for scripts");
