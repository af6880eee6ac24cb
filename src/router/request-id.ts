/**
 * @module The two ids of a request at the router. The internal id is
 * minted here for every request and is the only key the relay routes a
 * node's stream messages by (and the id the engine sees): unpredictable and
 * unique, so no client can name another's stream. The client's
 * X-Request-ID is only echoed back and logged; it never selects a stream,
 * so two clients (of any tenants) may send the same one at the same time.
 */
import { randomUUID } from "node:crypto";

/** Longest client X-Request-ID echoed back; a longer one is replaced by the internal id. */
export const MAX_CLIENT_REQUEST_ID = 128;

/** 1 to 128 printable ASCII characters, space excluded (safe in a header and a log line). */
const CLIENT_REQUEST_ID_RE = new RegExp(`^[\\x21-\\x7e]{1,${MAX_CLIENT_REQUEST_ID}}$`);

/**
 * A new internal request id: a random (version 4) UUID, 122 random bits.
 * randomUUID draws from a buffered pool, so this costs about 0.4 us a
 * request (randomBytes(16) unbuffered costs tens of us; measured on Node 26).
 */
export function mintRequestId(): string {
  return randomUUID();
}

/**
 * The client's X-Request-ID when it may be echoed: 1-128 printable ASCII
 * characters without spaces. Anything else (absent, empty, too long,
 * control or non-ASCII characters, the header given twice) is undefined,
 * and the response carries the internal id instead.
 */
export function clientRequestIdOf(header: string | string[] | undefined): string | undefined {
  return typeof header === "string" && CLIENT_REQUEST_ID_RE.test(header) ? header : undefined;
}
