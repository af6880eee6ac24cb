/**
 * @module The messages a node and the router exchange to move a published
 * model (`xim router models add NAME PATH`) to the node: a manifest request,
 * then chunk requests by (file, offset, length), so a broken transfer
 * resumes from the bytes the node already has. Each chunk carries its own
 * SHA-256 (caught at once, retried) on top of the whole-file SHA-256 in the
 * manifest (checked before the model is placed). These are payload schemas:
 * the wire protocol (src/protocol/messages.ts) carries them with its
 * version field, on the node's control connection.
 *
 * Receipts: every manifest and chunk reply carries a fresh random receipt,
 * and the node echoes the receipts of the replies it has read in its next
 * requests. The router serves a node only while few of its replies are
 * unacknowledged (router/model-serving.ts), so a node that never reads
 * cannot grow the router's queue toward it; a receipt cannot be echoed
 * without reading the reply that carried it.
 */
import { randomBytes } from "node:crypto";
import * as v from "valibot";
import { ManifestSchema } from "./manifest.ts";

/** Bytes per chunk: well under the wire's 16 MiB message limit. */
export const MODEL_CHUNK_BYTES = 4 * 1024 * 1024;

const requestId = v.pipe(v.string(), v.minLength(1), v.maxLength(64));
const name = v.pipe(v.string(), v.minLength(1), v.maxLength(256));
const count = v.pipe(v.number(), v.integer(), v.minValue(0), v.maxValue(Number.MAX_SAFE_INTEGER));

/** Receipts one request may acknowledge (a node has at most a few replies unacknowledged). */
export const MAX_RECEIPTS_PER_REQUEST = 64;

const receipt = v.pipe(v.string(), v.regex(/^[0-9a-f]{32}$/, "a receipt is 32 lowercase hex digits"));

/** The receipts of replies the node has read since its last request; absent means none. */
const receipts = v.optional(
  v.pipe(
    v.array(receipt),
    v.maxLength(MAX_RECEIPTS_PER_REQUEST, `at most ${MAX_RECEIPTS_PER_REQUEST} receipts per request`),
  ),
);

/** A fresh receipt for one reply: 16 random bytes, hex. */
export function newReceipt(): string {
  return randomBytes(16).toString("hex");
}

export const ModelManifestRequestSchema = v.object({
  type: v.literal("model_manifest_request"),
  requestId,
  name,
  receipts,
});

export const ModelChunkRequestSchema = v.object({
  type: v.literal("model_chunk_request"),
  requestId,
  name,
  path: v.pipe(v.string(), v.minLength(1), v.maxLength(1024)),
  offset: count,
  length: v.pipe(count, v.minValue(1), v.maxValue(MODEL_CHUNK_BYTES)),
  receipts,
});

export const ModelRequestSchema = v.variant("type", [ModelManifestRequestSchema, ModelChunkRequestSchema]);

export const ModelManifestReplySchema = v.object({
  type: v.literal("model_manifest"),
  requestId,
  manifest: ManifestSchema,
  receipt,
});

export const ModelChunkReplySchema = v.object({
  type: v.literal("model_chunk"),
  requestId,
  name,
  path: v.string(),
  offset: count,
  data: v.instance(Uint8Array),
  /** SHA-256 of `data`. */
  sha256: v.pipe(v.string(), v.regex(/^[0-9a-f]{64}$/)),
  receipt,
});

export const MODEL_ERROR_CODES = ["not_found", "changed", "bad_request", "unavailable"] as const;

export const ModelErrorReplySchema = v.object({
  type: v.literal("model_error"),
  requestId,
  /** not_found / bad_request: final; changed: the published folder changed under it (final); unavailable: retry. */
  code: v.picklist(MODEL_ERROR_CODES),
  message: v.pipe(v.string(), v.maxLength(4096)),
  retryAfterMs: v.optional(count),
});

export const ModelReplySchema = v.variant("type", [
  ModelManifestReplySchema,
  ModelChunkReplySchema,
  ModelErrorReplySchema,
]);

export type ModelRequest = v.InferOutput<typeof ModelRequestSchema>;
export type ModelReply = v.InferOutput<typeof ModelReplySchema>;

/**
 * How a node asks the router: send one request, resolve with its reply.
 * The session implements it on the control connection; it rejects with a
 * retryable PullError when the router does not answer in time.
 */
export type ModelChannel = (request: ModelRequest, signal?: AbortSignal) => Promise<unknown>;
