/**
 * @module The node's enrollment state: `enrollment.json` (node id, router
 * endpoints and keys, pins) and `curve.key` (the node's CURVE key pair) in
 * the config folder, 0600 files in a 0700 folder, each written atomically.
 * The key file is written first, so an enrollment.json on disk always has
 * its key beside it. The presence of enrollment.json means "enrolled".
 */
import { existsSync, readFileSync } from "node:fs";
import { join } from "node:path";
import * as v from "valibot";
import { ensurePrivateDir, writeFileAtomic } from "../core/atomic-file.ts";
import { XimError } from "../core/errors.ts";
import { EnrollResponseSchema, Z85KeySchema } from "../protocol/messages.ts";
import type { CurveKeyPair } from "../transport/curve.ts";

export const ENROLLMENT_FILE = "enrollment.json";
export const KEY_FILE = "curve.key";

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

/** Everything the node needs to connect: the enrollment and its key pair. */
export interface EnrollmentState extends EnrollmentFile {
  keys: CurveKeyPair;
  configDir: string;
}

export function enrollmentPath(configDir: string): string {
  return join(configDir, ENROLLMENT_FILE);
}

export function isEnrolled(configDir: string): boolean {
  return existsSync(enrollmentPath(configDir));
}

function readJson(path: string): unknown {
  try {
    return JSON.parse(readFileSync(path, "utf8"));
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    throw new XimError(
      "XIM_STATE_UNREADABLE",
      `cannot read ${path}: ${code === "ENOENT" ? "it does not exist" : (err as Error).message}`,
      {
        hint: "Enroll again with 'xim enroll --join-key ... --force'.",
        cause: err,
      },
    );
  }
}

/** The saved state, or null when this node never enrolled; a broken state is an error. */
export function loadEnrollmentState(configDir: string): EnrollmentState | null {
  const path = enrollmentPath(configDir);
  if (!existsSync(path)) return null;
  const file = v.safeParse(EnrollmentFileSchema, readJson(path));
  if (!file.success) {
    throw new XimError(
      "XIM_STATE_INVALID",
      `${path} is not a valid enrollment state: ${file.issues[0].message}`,
      {
        hint: "Enroll again with 'xim enroll --join-key ... --force'.",
      },
    );
  }
  const keyPath = join(configDir, KEY_FILE);
  const keys = v.safeParse(KeyFileSchema, readJson(keyPath));
  if (!keys.success) {
    throw new XimError("XIM_STATE_INVALID", `${keyPath} does not hold a CURVE key pair`, {
      hint: "Enroll again with 'xim enroll --join-key ... --force'.",
    });
  }
  if (keys.output.publicKey !== file.output.nodePublicKey) {
    throw new XimError("XIM_STATE_INVALID", `${keyPath} holds another key than the one enrolled in ${path}`, {
      hint: "Enroll again with 'xim enroll --join-key ... --force'.",
    });
  }
  return { ...file.output, keys: keys.output, configDir };
}

export async function saveEnrollmentState(
  configDir: string,
  file: EnrollmentFile,
  keys: CurveKeyPair,
): Promise<void> {
  await ensurePrivateDir(configDir);
  await writeFileAtomic(join(configDir, KEY_FILE), `${JSON.stringify(keys, null, 2)}\n`);
  await writeFileAtomic(enrollmentPath(configDir), `${JSON.stringify(file, null, 2)}\n`);
}
