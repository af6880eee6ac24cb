/**
 * @module How a setting of either table (the node's XEROTIER_AGENT_*, the
 * router's XIM_ROUTER_*) appears as a flag: its syntax and its --help
 * line, which names the variable behind it and its default.
 */
import type { AnySettingMeta } from "../core/config/kit.ts";
import type { DescribedSetting } from "../core/config/setting-info.ts";

type AnySetting = DescribedSetting<string, AnySettingMeta>;

export function isBoolSetting(info: AnySetting): boolean {
  return info.defaultValue === "true" || info.defaultValue === "false";
}

/** `--insecure [bool]` (the word may be left out: true), `--http-port <port>`. */
export function settingFlagSyntax(info: AnySetting): string {
  return isBoolSetting(info) ? `--${info.flag} [bool]` : `--${info.flag} <${info.argName ?? "value"}>`;
}

/** The setting's documentation, its variable and its default (a secret's default is never shown). */
export function settingDescription(info: AnySetting): string {
  const shownDefault = info.secret
    ? (info.defaultText ?? "unset")
    : (info.defaultText ?? info.defaultValue ?? "unset");
  return `${info.doc} (env: ${info.env}; default: ${shownDefault})`;
}
