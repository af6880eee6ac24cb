/**
 * @module `xim router init`: create the router's identity (a CURVE key pair
 * and a self-signed TLS certificate) in its state folder; the one router
 * subcommand that makes a router where there is none.
 */
import { ExitCode } from "../../core/errors.ts";
import { initRouter } from "../../router/identity.ts";
import { RouterStore } from "../../router/store.ts";
import { defineCommand } from "../command.ts";
import { jsonOption, listOption } from "../options.ts";
import { routerStateDir, stateOption } from "./state.ts";

export const initCommand = defineCommand({
  name: "init",
  summary: "Create the router identity: a CURVE key pair and a self-signed TLS certificate",
  settings: ["logLevel"],
  options: {
    state: stateOption,
    host: listOption("--host <name>", "extra DNS name or IP for the certificate (repeatable)"),
    json: jsonOption,
  },
  examples: ["xim router init", "xim router init --state /var/lib/xim-router --host router.internal"],
  async run(ctx) {
    const store = await RouterStore.open(routerStateDir(ctx).dir);
    let result: Awaited<ReturnType<typeof initRouter>>;
    try {
      result = await initRouter(store, { hosts: ctx.options.host ?? [] });
    } finally {
      store.close();
    }
    if (ctx.options.json) ctx.io.stdout(`${JSON.stringify(result)}\n`);
    else
      ctx.io.stdout(
        `${result.created ? "created" : "already initialized; unchanged"}: ${result.stateDir}\nCURVE public key: ${result.curvePublicKey}\nTLS certificate:  ${result.tlsCertPath} (sha256 ${result.tlsPin})\n`,
      );
    return ExitCode.ok;
  },
});
