/**
 * @module salt-secret: the per-tenant prefix-cache salts are an HMAC keyed
 * by XEROTIER_AGENT_VLLM_SALT_SECRET; with the built-in default, anyone who
 * reads xim's source can compute another tenant's salt, so a node that
 * serves several tenants must set its own.
 */
import { DEFAULT_SALT_SECRET } from "../../core/config/schema.ts";
import { type Check, ok, warn } from "../check.ts";

export const saltSecret: Check = {
  id: "salt-secret",
  group: "configuration",
  title: "Tenant salt secret is not the default",
  async run(ctx) {
    if (ctx.config.vllmSaltSecret.reveal() === DEFAULT_SALT_SECRET) {
      return warn(
        "XEROTIER_AGENT_VLLM_SALT_SECRET is the built-in default: fine for one tenant, but in a multi-tenant setup tenants' prefix-cache salts can be computed by anyone",
        "Set XEROTIER_AGENT_VLLM_SALT_SECRET=$(openssl rand -hex 32), the same value on every node that shares an LMCache.",
      );
    }
    return ok("a custom salt secret is set");
  },
};
