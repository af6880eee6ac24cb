/**
 * @module lmcache-redis: the Redis/Valkey of LMCache's shared tier answers
 * PING, through the node-redis client with a short connect timeout and no
 * reconnection. The URL is shown without its password.
 */
import { messageOf } from "../../core/errors.ts";
import { type Check, fail, ok, raisesOn, skipped } from "../check.ts";
import { lmcacheEnabled } from "../lmcache-paths.ts";

export const REDIS_TIMEOUT_MS = 2000;

export function redactUrl(url: string): string {
  try {
    const u = new URL(url);
    if (u.password) u.password = "***";
    return u.toString();
  } catch {
    return "(an unparsable URL)";
  }
}

export const lmcacheRedis: Check = {
  id: "lmcache-redis",
  group: "lmcache",
  title: "Redis/Valkey answers PING",
  // One PING (2 s timeout) a minute: the remote tier is lost, local tiers still serve, so degraded.
  watch: raisesOn("lmcache_degraded", "degraded", 60_000, ["fail"]),
  async run(ctx, signal) {
    if (!lmcacheEnabled(ctx)) return skipped("LMCache is off");
    const secret = ctx.config.lmcacheRedisUrl;
    if (!secret) return skipped("no XEROTIER_AGENT_LMCACHE_REDIS_URL: local tiers only");
    const url = secret.reveal();
    const shown = redactUrl(url);
    // Loaded here, not at the top: the client library takes about a second to import, and every xim command loads this module.
    const { createClient } = await import("redis");
    const client = createClient({
      url,
      socket: { connectTimeout: REDIS_TIMEOUT_MS, reconnectStrategy: false },
    });
    let lastError: unknown;
    client.on("error", (e: unknown) => {
      lastError = e;
    });
    const onAbort = () => client.destroy();
    signal.addEventListener("abort", onAbort, { once: true });
    const started = performance.now();
    try {
      await client.connect();
      const pong = await client.ping();
      const ms = performance.now() - started;
      return ok(`${shown} answered ${pong} in ${ms.toFixed(1)} ms`);
    } catch (err) {
      const msg = messageOf(err) || messageOf(lastError);
      const auth = /NOAUTH|WRONGPASS|invalid password|AUTH/i.test(msg);
      return fail(
        `${shown}: ${msg}`,
        auth
          ? "Put the right credentials in the URL: XEROTIER_AGENT_LMCACHE_REDIS_URL=redis://:<password>@host:6379 (or redis://user:<password>@...)."
          : "Start Redis/Valkey there or correct XEROTIER_AGENT_LMCACHE_REDIS_URL; test with `valkey-cli -u <url> ping`.",
      );
    } finally {
      signal.removeEventListener("abort", onAbort);
      try {
        client.destroy();
      } catch {
        // not connected
      }
    }
  },
};
