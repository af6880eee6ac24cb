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

/** Query parameters that carry a credential (presigned URLs, API keys, OAuth). */
const SECRET_QUERY_PARAM =
  /([?&](?:[\w.-]*(?:token|secret|passw(?:or)?d|pwd|signature|credential|api[-_]?key|auth)[\w.-]*|key|sig|code)=)[^&#\s"'<>]*/gi;

/**
 * Hide the credentials of URLs in a text: `redis://user:pw@h` and
 * `redis://:pw@h` (Redis's usual form) both become `redis://[redacted]@h`
 * (up to the last '@' before the path, as URL parsers read it; not in
 * `hf://name@revision`), and the
 * value of a token-like query parameter (`?token=`, `access_token`,
 * `X-Amz-Signature`, `api_key`, `sig`...) becomes `[redacted]`.
 */
export function redactUrlCredentials(text: string): string {
  return text
    .replace(/([a-z][a-z0-9+.-]*:\/\/)[^/?#\s]*@/gi, (m, scheme: string) =>
      // hf://NAME@REVISION names a revision, not a user.
      scheme.toLowerCase() === "hf://" ? m : `${scheme}${REDACTED}@`,
    )
    .replace(SECRET_QUERY_PARAM, (_m, name: string) => `${name}${REDACTED}`);
}
