/**
 * @module The router's state folder, one rule for every `xim router`
 * subcommand: `--state DIR`, else `XIM_ROUTER_STATE_DIR`, else
 * `$XDG_STATE_HOME/xim/router`. Only `xim router init` creates a router;
 * every other subcommand refuses a folder that holds none, so a typo in
 * `--state` is an error instead of a new, empty router that answers "no
 * nodes" and exits 0.
 */
import { existsSync } from "node:fs";
import { join } from "node:path";
import { ExitCode, XimError } from "../../core/errors.ts";
import { defaultRouterStateDir } from "../../core/paths.ts";
import { ROUTER_STATE_ENV } from "../../router/settings.ts";
import { DB_FILE, RouterStore } from "../../router/store.ts";
import type { CommandContext } from "../command.ts";
import { textOption } from "../options.ts";

export const stateOption = textOption(
  "--state <dir>",
  `router state folder (env: ${ROUTER_STATE_ENV}; default: $XDG_STATE_HOME/xim/router)`,
);

/** What the state folder is found from: a command's --state and its environment. */
type StateContext = Pick<CommandContext<{ state?: string | undefined }>, "io" | "options">;

/** The folder this command works on, and where that choice came from (for messages). */
export function routerStateDir(ctx: StateContext): { dir: string; from: string } {
  const flag = ctx.options.state;
  if (flag) return { dir: flag, from: "--state" };
  const env = ctx.io.env[ROUTER_STATE_ENV];
  if (env) return { dir: env, from: ROUTER_STATE_ENV };
  return { dir: defaultRouterStateDir(ctx.io.env), from: "the default" };
}

/** The state folder of a router that `xim router init` made; refuses any other folder. */
export function existingRouterStateDir(ctx: StateContext): string {
  const { dir, from } = routerStateDir(ctx);
  if (!existsSync(join(dir, DB_FILE))) {
    throw new XimError(
      "XIM_ROUTER_NO_STATE",
      `${dir} (${from}) holds no router: there is no ${DB_FILE} in it`,
      {
        hint: `Run 'xim router init --state ${dir}' first, or point --state (or ${ROUTER_STATE_ENV}) at the folder the router was initialized in.`,
        exitCode: ExitCode.failure,
      },
    );
  }
  return dir;
}

/** Run `fn` on the store of an existing router, closing it after. */
export async function withRouterStore<T>(
  ctx: StateContext,
  fn: (store: RouterStore) => Promise<T> | T,
): Promise<T> {
  const store = await RouterStore.open(existingRouterStateDir(ctx));
  try {
    return await fn(store);
  } finally {
    store.close();
  }
}
