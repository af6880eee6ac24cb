/**
 * @module `xim router`: the self-hostable reference router, one file per
 * subcommand in this folder. `init` creates its identity, `serve` runs
 * enrollment and the control plane, `join-key` mints, lists and revokes
 * keys, `api-key` does the same for the OpenAI API's keys, `nodes` lists
 * enrolled nodes, their leases and model assignments (`nodes revoke`
 * revokes one), `models` publishes and assigns models. Every subcommand
 * finds the router by one rule (state.ts).
 */
import { defineCommand } from "../command.ts";
import { apiKeyCommand } from "./api-key.ts";
import { initCommand } from "./init.ts";
import { joinKeyCommand } from "./join-key.ts";
import { modelsCommand } from "./models.ts";
import { nodesCommand } from "./nodes.ts";
import { serveCommand } from "./serve.ts";

export const routerCommand = defineCommand({
  name: "router",
  summary: "The self-hostable reference router",
  examples: [
    "xim router init",
    "xim router serve",
    "xim router join-key create --uses 2",
    "xim router api-key create --tenant alice",
    "xim router nodes",
  ],
  subcommands: [initCommand, serveCommand, joinKeyCommand, apiKeyCommand, nodesCommand, modelsCommand],
});
