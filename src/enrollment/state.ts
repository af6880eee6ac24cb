/**
 * @module The node's enrollment state: `enrollment.json` (node id, router
 * endpoints and keys, pins) and `curve.key` (the node's CURVE key pair) in
 * the config folder, 0600 files in a 0700 folder, each written atomically.
 * The key file is written first, so an enrollment.json on disk always has
 * its key beside it. The presence of enrollment.json means "enrolled".
 * The folder and every state file are checked before each read and write
 * (core/private-path.ts: not a symlink, ours, no group or other access) and
 * read with a size limit, never through a symlink. `revoked.json` records
 * that the router revoked this identity, so a restarted `xim run` stops at
 * once instead of retrying a key the router refuses at the handshake.
 */
import { lstatSync } from "node:fs";
import { rm } from "node:fs/promises";
import { join } from "node:path";
import * as v from "valibot";
import { ensurePrivateDir, writeFileAtomic } from "../core/atomic-file.ts";
import { FileLimits, readTextBounded } from "../core/bounded-read.ts";
import { ExitCode, XimError } from "../core/errors.ts";
import { checkPrivatePath } from "../core/private-path.ts";
import { safeText } from "../core/terminal-text.ts";
import { EnrollResponseSchema, NodeIdSchema, Z85KeySchema } from "../protocol/messages.ts";
import type { CurveKeyPair } from "../transport/curve.ts";

export const ENROLLMENT_FILE = "enrollment.json";
export const KEY_FILE = "curve.key";
export const REVOKED_FILE = "revoked.json";

const CONFIG_FOLDER = "the config folder";
const ENROLL_AGAIN = "Enroll again with 'xim enroll --join-key ... --force'.";

export const EnrollmentFileSchema = v.object({
  format: v.literal(1),
  ...EnrollResponseSchema.entries,
  routerUrl: v.string(),
  tlsPin: v.pipe(v.string(), v.regex(/^[0-9a-f]{64}$/)),
  curvePin: v.pipe(v.string(), v.regex(/^[0-9a-f]{64}$/)),
  nodePublicKey: Z85KeySchema,
  enrolledAt: v.string(),
});
export type EnrollmentFile = v.InferOutput<typeof EnrollmentFileSchema>;

const KeyFileSchema = v.object({ publicKey: Z85KeySchema, secretKey: Z85KeySchema });

/** What `revoked.json` holds: which identity the router revoked, when, and what it said. */
const RevokedFileSchema = v.object({
  nodeId: NodeIdSchema,
  revokedAt: v.string(),
  message: v.pipe(v.string(), v.maxLength(4096)),
});
type RevokedFile = v.InferOutput<typeof RevokedFileSchema>;

/** Everything the node needs to connect: the enrollment and its key pair. */
export interface EnrollmentState extends EnrollmentFile {
  keys: CurveKeyPair;
  configDir: string;
}

export function enrollmentPath(configDir: string): string {
  return join(configDir, ENROLLMENT_FILE);
}

/** Whether enrollment.json is there (a symlink counts: reading it is then refused with the fix). */
export function isEnrolled(configDir: string): boolean {
  return lstatSync(enrollmentPath(configDir), { throwIfNoEntry: false }) !== undefined;
}

/** Why a revoked node stops, and the one way back: a new identity from a new join key. */
export function revokedError(nodeId: string, routerMessage: string): XimError {
  return new XimError(
    "XIM_NODE_REVOKED",
    `the router revoked this node (${nodeId}): ${safeText(routerMessage)}; it will not retry`,
    {
      hint: "This node's identity is refused for good. Ask the router's operator for a new join key ('xim router join-key create'), then enroll again: 'xim enroll --join-key xjk_... --force', and start 'xim run'.",
      exitCode: ExitCode.revoked,
    },
  );
}

/**
 * Refuse a config folder that exists but is not private (a symlink, another
 * owner, group or other access); false when it does not exist yet.
 */
export function checkConfigFolder(configDir: string): Promise<boolean> {
  return checkPrivatePath(configDir, "folder", CONFIG_FOLDER);
}

/** A state file as JSON: checked private, read bounded and without following a symlink; null when absent. */
async function readStateJson(path: string, what: string): Promise<unknown | null> {
  if (!(await checkPrivatePath(path, "file", what))) return null;
  let text: string;
  try {
    text = await readTextBounded(path, { what, maxBytes: FileLimits.smallState, noFollow: true });
  } catch (err) {
    if (err instanceof XimError) throw err;
    throw new XimError("XIM_STATE_UNREADABLE", `cannot read ${what} ${path}: ${(err as Error).message}`, {
      hint: ENROLL_AGAIN,
      cause: err,
    });
  }
  try {
    return JSON.parse(text);
  } catch (err) {
    throw new XimError(
      "XIM_STATE_UNREADABLE",
      `cannot read ${what} ${path}: it is not JSON (${(err as Error).message})`,
      {
        hint: ENROLL_AGAIN,
        cause: err,
      },
    );
  }
}

/**
 * The saved state, or null when this node never enrolled; a broken or
 * unsafe state is an error (XIM_STATE_*), and so is a revoked identity
 * (XIM_NODE_REVOKED, exit 13).
 */
export async function loadEnrollmentState(configDir: string): Promise<EnrollmentState | null> {
  if (!(await checkConfigFolder(configDir))) return null;
  const path = enrollmentPath(configDir);
  const raw = await readStateJson(path, "the enrollment state");
  if (raw === null) return null;
  const file = v.safeParse(EnrollmentFileSchema, raw);
  if (!file.success) {
    throw new XimError(
      "XIM_STATE_INVALID",
      `${path} is not a valid enrollment state: ${file.issues[0].message}`,
      { hint: ENROLL_AGAIN },
    );
  }
  const keyPath = join(configDir, KEY_FILE);
  const rawKeys = await readStateJson(keyPath, "the CURVE key file");
  if (rawKeys === null) {
    throw new XimError("XIM_STATE_UNREADABLE", `cannot read ${keyPath}: it does not exist`, {
      hint: ENROLL_AGAIN,
    });
  }
  const keys = v.safeParse(KeyFileSchema, rawKeys);
  if (!keys.success) {
    throw new XimError("XIM_STATE_INVALID", `${keyPath} does not hold a CURVE key pair`, {
      hint: ENROLL_AGAIN,
    });
  }
  if (keys.output.publicKey !== file.output.nodePublicKey) {
    throw new XimError("XIM_STATE_INVALID", `${keyPath} holds another key than the one enrolled in ${path}`, {
      hint: ENROLL_AGAIN,
    });
  }
  const revoked = await loadRevocation(configDir);
  if (revoked?.nodeId === file.output.nodeId) throw revokedError(revoked.nodeId, revoked.message);
  return { ...file.output, keys: keys.output, configDir };
}

async function loadRevocation(configDir: string): Promise<RevokedFile | null> {
  const path = join(configDir, REVOKED_FILE);
  const raw = await readStateJson(path, "the revocation record");
  if (raw === null) return null;
  const parsed = v.safeParse(RevokedFileSchema, raw);
  if (!parsed.success) {
    throw new XimError("XIM_STATE_INVALID", `${path} is not a valid revocation record`, {
      hint: ENROLL_AGAIN,
    });
  }
  return parsed.output;
}

/** Remember that the router revoked this identity (a later `xim run` stops at once). */
export async function saveRevocation(configDir: string, nodeId: string, message: string): Promise<void> {
  await ensurePrivateDir(configDir, { strict: true, what: CONFIG_FOLDER });
  const record: RevokedFile = {
    nodeId,
    revokedAt: new Date().toISOString(),
    message: message.slice(0, 4096),
  };
  await writeFileAtomic(join(configDir, REVOKED_FILE), `${JSON.stringify(record, null, 2)}\n`);
}

/**
 * The key pair an enrollment in progress offers the router, kept until the
 * state is saved: an enrollment cut off after the router answered (a
 * network error, a killed CI job) is retried with the same key, and the
 * router then returns the node it already made instead of spending another
 * use of the join key.
 */
export const PENDING_KEY_FILE = "pending-enrollment.key";

const PendingKeyFileSchema = v.object({
  /** The join key's id (jk_...): a retry with another join key gets a fresh key pair. */
  joinKeyId: v.pipe(v.string(), v.maxLength(64)),
  keys: KeyFileSchema,
});

export async function pendingEnrollmentKeys(
  configDir: string,
  joinKeyId: string,
  generate: () => CurveKeyPair,
): Promise<CurveKeyPair> {
  await ensurePrivateDir(configDir, { strict: true, what: CONFIG_FOLDER });
  const path = join(configDir, PENDING_KEY_FILE);
  const raw = await readStateJson(path, "the pending enrollment key");
  const kept = raw === null ? null : v.safeParse(PendingKeyFileSchema, raw);
  if (kept?.success && kept.output.joinKeyId === joinKeyId) return kept.output.keys;
  const keys = generate();
  await writeFileAtomic(path, `${JSON.stringify({ joinKeyId, keys }, null, 2)}\n`);
  return keys;
}

export async function saveEnrollmentState(
  configDir: string,
  file: EnrollmentFile,
  keys: CurveKeyPair,
): Promise<void> {
  await ensurePrivateDir(configDir, { strict: true, what: CONFIG_FOLDER });
  await writeFileAtomic(join(configDir, KEY_FILE), `${JSON.stringify(keys, null, 2)}\n`);
  await writeFileAtomic(enrollmentPath(configDir), `${JSON.stringify(file, null, 2)}\n`);
  // A new identity: the revocation of the old one no longer applies, and the
  // key offered while enrolling is now the node's own.
  await rm(join(configDir, REVOKED_FILE), { force: true });
  await rm(join(configDir, PENDING_KEY_FILE), { force: true });
}
