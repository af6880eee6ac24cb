/**
 * @module `xim enroll`: trade a join key for a node identity and save it.
 * Never prompts; --json for scripts; exit codes in docs/protocol.md.
 */

import { preflight, preflightText } from "../agent/conditions/preflight.ts";
import { ExitCode, isXimError } from "../core/errors.ts";
import { enroll } from "../enrollment/enroll.ts";
import { defineCommand } from "./command.ts";
import { switchOption } from "./options.ts";

export const enrollCommand = defineCommand({
  name: "enroll",
  summary: "Trade a one-time join key for a node identity",
  description: `Exit codes (for scripts):
  0 enrolled   3 already enrolled (nothing changed; --force replaces)
  4 malformed key   5 expired key   6 used-up key   7 unknown or revoked key
  8 router unreachable   9 TLS failure   10 router fingerprint mismatch
  11 protocol version mismatch   12 plain HTTP refused (use --insecure in development)
  2 usage   78 configuration   1 anything else`,
  settings: ["joinKey", "routerUrl", "allowInsecure", "configDir", "logLevel"],
  options: {
    force: switchOption("--force", "enroll again even when this node is already enrolled (a new identity)"),
    json: switchOption("--json", "print the node id, router and state path as JSON"),
  },
  examples: [
    "xim enroll --join-key xjk_myproject_AbC...",
    "XEROTIER_AGENT_JOIN_KEY=xjk_... xim enroll --json",
    "xim enroll --join-key xjk_... --router https://router.internal:8443",
  ],
  async run(ctx) {
    const { config } = ctx.config();
    // The start-up checks first: a node that enrolls with a lost GPU is told now, with the fix.
    const findings = preflightText(await preflight({ config, env: ctx.io.env }));
    if (findings) ctx.io.stderr(findings);
    let result: Awaited<ReturnType<typeof enroll>>;
    try {
      result = await enroll({
        joinKey: config.joinKey,
        routerUrl: config.routerUrl,
        allowInsecure: config.allowInsecure,
        configDir: config.configDir,
        force: ctx.options.force === true,
        logger: ctx.logger(),
      });
    } catch (err) {
      // Scripts with --json get the failure as JSON too; the message still goes to stderr.
      if (ctx.options.json && isXimError(err)) {
        ctx.io.stdout(
          `${JSON.stringify({ error: { code: err.code, message: err.message, hint: err.hint ?? null, exitCode: err.exitCode } })}\n`,
        );
      }
      throw err;
    }
    if (config.allowInsecure && result.router.startsWith("http:")) {
      ctx.io.stderr("warning: enrolled over plain HTTP; the join key and credentials travelled in clear\n");
    }
    if (ctx.options.json) {
      ctx.io.stdout(
        `${JSON.stringify({ nodeId: result.nodeId, project: result.project, router: result.router, statePath: result.statePath, controlEndpoint: result.controlEndpoint, streamingEndpoint: result.streamingEndpoint, replaced: result.replaced })}\n`,
      );
    } else {
      ctx.io.stdout(
        `enrolled as ${result.nodeId} (project ${result.project}) with ${result.router}\nstate: ${result.statePath}\nnext: xim run\n`,
      );
    }
    return ExitCode.ok;
  },
});
