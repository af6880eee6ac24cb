/**
 * The router's register challenges (src/router/register-challenges.ts):
 * single use, bound to the connection that asked, expiring, and bounded in
 * number. Time is an injected clock.
 */
import assert from "node:assert/strict";
import { test } from "node:test";
import {
  CHALLENGE_TTL_MS,
  MAX_PENDING_CHALLENGES,
  RegisterChallenges,
} from "../../src/router/register-challenges.ts";

test("a challenge is taken once, only by the connection it was given to, before it expires", () => {
  let now = 1_000_000;
  const c = new RegisterChallenges(() => now);
  const { challenge, expiresInMs } = c.issue("c.a");
  assert.equal(expiresInMs, CHALLENGE_TTL_MS);
  assert.match(challenge, /^[0-9a-f]{32}$/);
  assert.equal(c.take("c.b", challenge), false, "another connection");
  assert.equal(c.take("c.a", challenge), true);
  assert.equal(c.take("c.a", challenge), false, "used once");
  const late = c.issue("c.a").challenge;
  now += CHALLENGE_TTL_MS;
  assert.equal(c.take("c.a", late), false, "expired");
  const replaced = c.issue("c.a").challenge;
  const current = c.issue("c.a").challenge;
  assert.equal(c.take("c.a", replaced), false, "a newer challenge replaces the older one");
  assert.equal(c.size, 0);
  assert.notEqual(current, replaced);
});

test("no more than MAX_PENDING_CHALLENGES wait at once: the oldest go first", () => {
  const c = new RegisterChallenges(() => 0);
  const first = c.issue("c.first").challenge;
  for (let i = 0; i < MAX_PENDING_CHALLENGES + 10; i++) c.issue(`c.${i}`);
  assert.ok(c.size <= MAX_PENDING_CHALLENGES);
  assert.equal(c.take("c.first", first), false);
  const last = c.issue("c.last").challenge;
  assert.equal(c.take("c.last", last), true);
});
