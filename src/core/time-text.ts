/**
 * @module Epoch-millisecond times read back from stored state (the
 * router's database) as text. A Date holds at most ±8.64e15 ms; a stored
 * value outside that (state written by an older xim, or edited by hand)
 * must print as invalid rather than throw from toISOString and take every
 * reader of that state down with it. Durations print as seconds.
 */

/** The largest epoch time, in ms either side of 1970, that a Date can hold (ECMA-262 21.4.1.1). */
const DATE_LIMIT_MS = 8.64e15;

/** Whether `ms` is a time a Date can hold and print. */
export function isValidTime(ms: number): boolean {
  return Number.isFinite(ms) && Math.abs(ms) <= DATE_LIMIT_MS;
}

/** ISO 8601 text of an epoch time; "invalid (<value>)" for one a Date cannot hold. Never throws. */
export function isoTime(ms: number): string {
  return isValidTime(ms) ? new Date(ms).toISOString() : `invalid (${ms})`;
}

/** A duration in seconds for messages: "4 s", "2.5 s". */
export function formatSeconds(ms: number): string {
  const s = ms / 1000;
  return `${Number.isInteger(s) ? s : s.toFixed(1)} s`;
}
