/**
 * @module Where xim keeps things, following the XDG base directory rules
 * (the container image sets HOME=/var/lib/inference, so these land in the
 * folders its compose files mount).
 */
import { homedir } from "node:os";
import { join } from "node:path";

type Env = Record<string, string | undefined>;

function home(env: Env): string {
  return env.HOME && env.HOME.length > 0 ? env.HOME : homedir();
}

export function xdgConfigHome(env: Env = process.env): string {
  return env.XDG_CONFIG_HOME || join(home(env), ".config");
}

export function xdgCacheHome(env: Env = process.env): string {
  return env.XDG_CACHE_HOME || join(home(env), ".cache");
}

export function xdgStateHome(env: Env = process.env): string {
  return env.XDG_STATE_HOME || join(home(env), ".local", "state");
}

/** Enrollment state: `$XDG_CONFIG_HOME/xerotier` as the original agent used. */
export function defaultConfigDir(env: Env = process.env): string {
  return join(xdgConfigHome(env), "xerotier");
}

/** Model cache: `$XDG_CACHE_HOME/xerotier/models`. */
export function defaultModelCacheDir(env: Env = process.env): string {
  return join(xdgCacheHome(env), "xerotier", "models");
}

/** Router state: `$XDG_STATE_HOME/xim/router`. */
export function defaultRouterStateDir(env: Env = process.env): string {
  return join(xdgStateHome(env), "xim", "router");
}
