/**
 * @module Enrollment: trade a join key for a node identity. The node makes
 * its CURVE key pair locally, connects to the address in the key (or
 * --router), accepts the TLS server only when its certificate matches the
 * key's pin (so a self-signed router needs no CA and an impostor never
 * sees the key), posts /v1/enroll, checks the returned CURVE key against
 * its pin, and saves the state. Every failure is a specific XimError with
 * an exit code a CI script can branch on (docs/protocol.md).
 */
import { X509Certificate } from "node:crypto";
import * as http from "node:http";
import { isIP } from "node:net";
import { hostname } from "node:os";
import * as tls from "node:tls";
import * as v from "valibot";
import { ExitCode, XimError } from "../core/errors.ts";
import type { Logger } from "../core/log.ts";
import type { Secret } from "../core/secret.ts";
import { sha256Hex } from "../core/sha256.ts";
import { safeText } from "../core/terminal-text.ts";
import { XIM_VERSION } from "../core/version.ts";
import { type JoinKeyParts, joinKeyId, joinKeySecretHash, parseJoinKey } from "../protocol/join-key.ts";
import {
  EnrollErrorSchema,
  type EnrollRequest,
  type EnrollResponse,
  EnrollResponseSchema,
  JoinKeyCheckResponseSchema,
} from "../protocol/messages.ts";
import { PROTOCOL_VERSION, versionMismatchMessage } from "../protocol/version.ts";
import { curveKeyFingerprint, generateCurveKeyPair } from "../transport/curve.ts";
import {
  checkConfigFolder,
  enrollmentPath,
  isEnrolled,
  pendingEnrollmentKeys,
  saveEnrollmentState,
} from "./state.ts";

export interface EnrollOptions {
  joinKey: Secret | string | undefined;
  routerUrl?: string;
  allowInsecure: boolean;
  configDir: string;
  force?: boolean;
  logger: Logger;
  timeoutMs?: number;
}

export interface EnrollResult {
  nodeId: string;
  project: string;
  router: string;
  statePath: string;
  controlEndpoint: string;
  streamingEndpoint: string;
  replaced: boolean;
}

function fail(code: string, exitCode: number, message: string, hint?: string, cause?: unknown): XimError {
  return new XimError(code, message, { exitCode, hint, cause });
}

export function parseKeyOrThrow(text: string): JoinKeyParts {
  const parsed = parseJoinKey(text);
  if (parsed.ok) return parsed.key;
  throw fail(
    "XIM_JOIN_KEY_MALFORMED",
    ExitCode.malformedKey,
    `the join key is malformed (${parsed.part}): ${parsed.message}`,
    "Copy the whole key as 'xim router join-key create' printed it: xjk_<project>_<token>.",
  );
}

interface HttpAnswer {
  status: number;
  body: string;
}

const NET_CODES = new Set([
  "ECONNREFUSED",
  "ENOTFOUND",
  "EAI_AGAIN",
  "EHOSTUNREACH",
  "ENETUNREACH",
  "ETIMEDOUT",
  "ECONNRESET_BEFORE_TLS",
]);

function unreachable(url: URL, err: unknown): XimError {
  const code = (err as NodeJS.ErrnoException).code ?? "";
  const what =
    code === "ECONNREFUSED"
      ? "connection refused"
      : code === "ENOTFOUND" || code === "EAI_AGAIN"
        ? "host not found"
        : code === "ETIMEDOUT"
          ? "timed out"
          : code || String(err);
  return fail(
    "XIM_ROUTER_UNREACHABLE",
    ExitCode.unreachable,
    `cannot reach the router at ${url.origin}: ${what}`,
    "Check that 'xim router serve' runs there and the port is open from this machine; --router URL overrides the address in the key.",
    err,
  );
}

/** A TLS connection whose certificate matches the pin, or an error saying exactly what failed. */
function pinnedTls(url: URL, pin: string, timeoutMs: number): Promise<tls.TLSSocket> {
  return new Promise((resolve, reject) => {
    const host = url.hostname.replace(/^\[|\]$/g, "");
    const socket = tls.connect({
      host,
      port: Number(url.port || 443),
      servername: isIP(host) ? undefined : host,
      // Trust comes from the pin in the join key, checked below before any byte is sent.
      rejectUnauthorized: false,
      ALPNProtocols: ["http/1.1"],
    });
    let connected = false;
    const timer = setTimeout(
      () => socket.destroy(Object.assign(new Error("timed out"), { code: "ETIMEDOUT" })),
      timeoutMs,
    );
    socket.once("connect", () => {
      connected = true;
    });
    socket.once("secureConnect", () => {
      clearTimeout(timer);
      const raw = socket.getPeerCertificate(false)?.raw;
      const got = raw ? sha256Hex(raw) : "";
      if (got !== pin) {
        socket.destroy();
        let subject = "";
        try {
          subject = raw ? ` (subject ${new X509Certificate(raw).subject.replace(/\n/g, ", ")})` : "";
        } catch {}
        reject(
          fail(
            "XIM_ROUTER_FINGERPRINT_MISMATCH",
            ExitCode.fingerprint,
            `the router at ${url.origin} presented a TLS certificate${subject} whose SHA-256 ${got.slice(0, 16)}... does not match the join key's pin ${pin.slice(0, 16)}...; refusing to send the key`,
            "This is not the router that minted the key, or its certificate changed. If you trust it, mint a new key there with 'xim router join-key create'.",
          ),
        );
        return;
      }
      resolve(socket);
    });
    socket.once("error", (err: NodeJS.ErrnoException) => {
      clearTimeout(timer);
      if (!connected && NET_CODES.has(err.code ?? "")) return reject(unreachable(url, err));
      reject(
        fail(
          "XIM_ROUTER_TLS",
          ExitCode.tls,
          `TLS with the router at ${url.origin} failed: ${err.message}`,
          "The join key pins the router's self-signed certificate, so no CA is needed; this error means the TLS handshake itself failed. If the router serves plain HTTP (development), use an http:// --router URL with --insecure.",
          err,
        ),
      );
    });
  });
}

/** The router's answers are small JSON: more than this is not a router's answer. */
const MAX_ANSWER_BYTES = 1024 * 1024;

async function post(
  url: URL,
  body: string,
  o: { pin: string; timeoutMs: number; path?: string },
): Promise<HttpAnswer> {
  const secure = url.protocol === "https:";
  const socket = secure ? await pinnedTls(url, o.pin, o.timeoutMs) : undefined;
  return new Promise((resolve, reject) => {
    const req = http.request(
      {
        method: "POST",
        host: url.hostname.replace(/^\[|\]$/g, ""),
        port: Number(url.port || (secure ? 443 : 80)),
        path: o.path ?? "/v1/enroll",
        headers: {
          "content-type": "application/json",
          "content-length": Buffer.byteLength(body),
          host: url.host,
        },
        timeout: o.timeoutMs,
        ...(socket ? { createConnection: () => socket } : {}),
      },
      (res) => {
        const parts: Buffer[] = [];
        let size = 0;
        res.on("data", (c: Buffer) => {
          size += c.length;
          if (size > MAX_ANSWER_BYTES) {
            req.destroy();
            reject(
              fail(
                "XIM_ENROLL_FAILED",
                ExitCode.failure,
                `the router at ${url.origin} answered more than ${MAX_ANSWER_BYTES} bytes`,
              ),
            );
            return;
          }
          parts.push(c);
        });
        res.on("end", () =>
          resolve({ status: res.statusCode ?? 0, body: Buffer.concat(parts).toString("utf8") }),
        );
        res.on("error", reject);
      },
    );
    req.on("timeout", () => req.destroy(Object.assign(new Error("timed out"), { code: "ETIMEDOUT" })));
    req.on("error", (err: NodeJS.ErrnoException) =>
      reject(NET_CODES.has(err.code ?? "") ? unreachable(url, err) : err),
    );
    req.end(body);
  });
}

/** The router's JSON answer checked against its schema; null when it is not JSON at all. */
function parseAnswer<S extends v.GenericSchema>(body: string, schema: S) {
  try {
    return v.safeParse(schema, JSON.parse(body));
  } catch {
    return null;
  }
}

function refusal(answer: HttpAnswer, url: URL): XimError {
  const parsed = parseAnswer(answer.body, EnrollErrorSchema);
  if (!parsed?.success) {
    return fail(
      "XIM_ENROLL_FAILED",
      ExitCode.failure,
      `the router at ${url.origin} answered HTTP ${answer.status} without an enrollment error: ${safeText(answer.body, { maxLength: 200 })}`,
    );
  }
  const code = parsed.output.error.code;
  // The router's words go into our message, then to a terminal: one line, no control characters.
  const message = safeText(parsed.output.error.message);
  const newKey = "Ask the router's operator for a new key: 'xim router join-key create'.";
  switch (code) {
    case "expired_key":
      return fail(
        "XIM_JOIN_KEY_EXPIRED",
        ExitCode.expiredKey,
        `the join key has expired: ${message}`,
        newKey,
      );
    case "used_key":
      return fail(
        "XIM_JOIN_KEY_USED",
        ExitCode.usedKey,
        `the join key is used up: ${message}`,
        `${newKey} Use --uses N for several nodes.`,
      );
    case "revoked_key":
      return fail(
        "XIM_JOIN_KEY_REVOKED",
        ExitCode.unknownKey,
        `the join key was revoked: ${message}`,
        newKey,
      );
    case "unknown_key":
      return fail(
        "XIM_JOIN_KEY_UNKNOWN",
        ExitCode.unknownKey,
        `the router does not know this join key: ${message}`,
        newKey,
      );
    case "malformed_key":
      return fail(
        "XIM_JOIN_KEY_MALFORMED",
        ExitCode.malformedKey,
        `the router refused the join key as malformed: ${message}`,
      );
    case "version_mismatch":
      return fail(
        "XIM_PROTOCOL_MISMATCH",
        ExitCode.version,
        message,
        parsed.output.error.upgrade === "node" ? "Upgrade xim on this node." : "Upgrade the router.",
      );
    default:
      return fail("XIM_ENROLL_FAILED", ExitCode.failure, `enrollment refused (${code}): ${message}`);
  }
}

/** The join key's text, from the option or the Secret holding it; a usage error when there is none. */
function joinKeyText(o: EnrollOptions): string {
  const text = typeof o.joinKey === "string" ? o.joinKey : o.joinKey?.reveal();
  if (text) return text;
  throw new XimError("XIM_NO_JOIN_KEY", "no join key given", {
    exitCode: ExitCode.usage,
    hint: "Pass --join-key xjk_... or set XEROTIER_AGENT_JOIN_KEY.",
  });
}

/** The router to enroll with (--router, else the key's): https, or http only with --insecure (and a warning). */
function enrollmentUrl(o: EnrollOptions, keyUrl: string): URL {
  let url: URL;
  try {
    url = new URL(o.routerUrl ?? keyUrl);
  } catch {
    throw fail(
      "XIM_ROUTER_URL",
      ExitCode.usage,
      `'${o.routerUrl}' is not a URL`,
      "Use --router https://HOST:PORT.",
    );
  }
  if (url.protocol === "https:") return url;
  if (url.protocol !== "http:") {
    throw fail(
      "XIM_ROUTER_URL",
      ExitCode.usage,
      `router address ${url.href} must be https:// (or http:// with --insecure)`,
    );
  }
  if (!o.allowInsecure) {
    throw fail(
      "XIM_INSECURE_REFUSED",
      ExitCode.insecure,
      `refusing to enroll over plain HTTP (${url.origin}): the join key and the node's credentials would travel in clear`,
      "Use the router's https:// address, or for development only pass --insecure (XEROTIER_AGENT_ALLOW_INSECURE=1).",
    );
  }
  o.logger.warn(
    { router: url.origin },
    "enrolling over plain HTTP (--insecure): the join key and node credentials travel in clear; development only",
  );
  return url;
}

/** The router's 200 answer, checked: valid, our protocol version, and the CURVE key the join key pins. */
function acceptedResponse(body: string, curvePin: string): EnrollResponse {
  let response: EnrollResponse;
  try {
    const parsed = v.safeParse(EnrollResponseSchema, JSON.parse(body));
    if (!parsed.success) throw new Error(parsed.issues[0].message);
    response = parsed.output;
  } catch (err) {
    throw fail(
      "XIM_ENROLL_FAILED",
      ExitCode.failure,
      `the router's enrollment answer is not valid: ${(err as Error).message}`,
      undefined,
      err,
    );
  }
  if (response.protocolVersion !== PROTOCOL_VERSION) {
    throw fail(
      "XIM_PROTOCOL_MISMATCH",
      ExitCode.version,
      versionMismatchMessage(PROTOCOL_VERSION, response.protocolVersion),
    );
  }
  if (curveKeyFingerprint(response.routerPublicKey) !== curvePin) {
    throw fail(
      "XIM_ROUTER_FINGERPRINT_MISMATCH",
      ExitCode.fingerprint,
      `the router's CURVE public key does not match the join key's pin ${curvePin.slice(0, 16)}...; the enrollment is not saved`,
      "This router is not the one that minted the key. Mint a new key on the right router.",
    );
  }
  return response;
}

export async function enroll(o: EnrollOptions): Promise<EnrollResult> {
  const statePath = enrollmentPath(o.configDir);
  // Before anything is sent or written: a config folder another user can change is refused.
  await checkConfigFolder(o.configDir);
  const replaced = isEnrolled(o.configDir);
  if (replaced && !o.force) {
    throw fail(
      "XIM_ALREADY_ENROLLED",
      ExitCode.alreadyEnrolled,
      `this node is already enrolled (${statePath}); nothing changed`,
      "Use --force to enroll again with a new identity (the old node id stops working), or just run 'xim run'.",
    );
  }
  const text = joinKeyText(o);
  const key = parseKeyOrThrow(text);
  const url = enrollmentUrl(o, key.url);
  // The same key on a retry, so a cut-off enrollment spends no second use (enrollment-state.ts).
  const keys = await pendingEnrollmentKeys(
    o.configDir,
    joinKeyId(joinKeySecretHash(key.secret)),
    generateCurveKeyPair,
  );
  const request: EnrollRequest = {
    protocolVersion: PROTOCOL_VERSION,
    joinKey: text,
    nodePublicKey: keys.publicKey,
    // The router refuses control characters (they would reach operators' terminals).
    hostname: safeText(hostname(), { maxLength: 255 }),
    agentVersion: XIM_VERSION,
  };
  const answer = await post(url, JSON.stringify(request), {
    pin: key.tlsPin,
    timeoutMs: o.timeoutMs ?? 15_000,
  });
  if (answer.status !== 200) throw refusal(answer, url);
  const response = acceptedResponse(answer.body, key.curvePin);
  await saveEnrollmentState(
    o.configDir,
    {
      format: 1,
      ...response,
      routerUrl: url.origin,
      tlsPin: key.tlsPin,
      curvePin: key.curvePin,
      nodePublicKey: keys.publicKey,
      enrolledAt: new Date().toISOString(),
    },
    keys,
  );
  o.logger.info({ nodeId: response.nodeId, project: response.project, router: url.origin }, "enrolled");
  return {
    nodeId: response.nodeId,
    project: response.project,
    router: url.origin,
    statePath,
    controlEndpoint: response.controlEndpoint,
    streamingEndpoint: response.streamingEndpoint,
    replaced,
  };
}

export type JoinKeyCheck =
  | { ok: true; project: string; usesLeft: number; expiresAt: string | null; router: string }
  | { ok: false; error: XimError };

/**
 * Ask the router whether `joinKey` would enroll a node now (`POST
 * /v1/enroll/check`: nothing is spent). The router is pinned as for an
 * enrollment; a router that cannot be reached throws, as `enroll` does.
 */
export async function checkJoinKey(o: {
  joinKey: string;
  routerUrl?: string;
  allowInsecure: boolean;
  timeoutMs?: number;
}): Promise<JoinKeyCheck> {
  const key = parseKeyOrThrow(o.joinKey);
  const url = new URL(o.routerUrl ?? key.url);
  if (url.protocol === "http:" && !o.allowInsecure) {
    return {
      ok: false,
      error: fail(
        "XIM_INSECURE_REFUSED",
        ExitCode.insecure,
        `the key's router ${url.origin} is plain HTTP`,
        "Set XEROTIER_AGENT_ALLOW_INSECURE=1 for a development router.",
      ),
    };
  }
  const answer = await post(url, JSON.stringify({ joinKey: o.joinKey }), {
    pin: key.tlsPin,
    timeoutMs: o.timeoutMs ?? 5000,
    path: "/v1/enroll/check",
  });
  if (answer.status !== 200) return { ok: false, error: refusal(answer, url) };
  const parsed = parseAnswer(answer.body, JoinKeyCheckResponseSchema);
  if (!parsed?.success) {
    return {
      ok: false,
      error: fail(
        "XIM_ENROLL_FAILED",
        ExitCode.failure,
        `the router at ${url.origin} gave no join-key check answer (an older router?)`,
      ),
    };
  }
  return { ...parsed.output, router: url.origin };
}
