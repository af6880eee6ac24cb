/**
 * @module A value that must never reach a log line, a config dump or an
 * error message. Every way of turning it into text prints `[redacted]`;
 * only `reveal()` gives the value, and only code that sends it on purpose
 * (enrollment, HMAC of the cache salt) calls it.
 */
import { inspect } from "node:util";

export const REDACTED = "[redacted]";

export class Secret {
  readonly #value: string;

  constructor(value: string) {
    this.#value = value;
  }

  reveal(): string {
    return this.#value;
  }

  toString(): string {
    return REDACTED;
  }

  toJSON(): string {
    return REDACTED;
  }

  [inspect.custom](): string {
    return REDACTED;
  }
}

/**
 * Hide the credentials of URLs in a text: `redis://user:pw@h` and
 * `redis://:pw@h` (Redis's usual form) both become `redis://[redacted]@h`.
 */
export function redactUrlCredentials(text: string): string {
  return text.replace(/([a-z][a-z0-9+.-]*:\/\/)[^/@\s]*@/gi, (_m, scheme: string) => `${scheme}${REDACTED}@`);
}
