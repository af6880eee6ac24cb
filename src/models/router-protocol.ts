/**
 * @module The messages a node and the router exchange to move a published
 * model (`xim router models add NAME PATH`) to the node: a manifest request,
 * then chunk requests by (file, offset, length), so a broken transfer
 * resumes from the bytes the node already has. Each chunk carries its own
 * SHA-256 (caught at once, retried) on top of the whole-file SHA-256 in the
 * manifest (checked before the model is placed). These are payload schemas:
 * the wire protocol (src/protocol/messages.ts) carries them with its
 * version field, on the node's control connection.
 */
import * as v from "valibot";
import { ManifestSchema } from "./manifest.ts";

/** Bytes per chunk: well under the wire's 16 MiB message limit. */
export const MODEL_CHUNK_BYTES = 4 * 1024 * 1024;

const requestId = v.pipe(v.string(), v.minLength(1), v.maxLength(64));
const name = v.pipe(v.string(), v.minLength(1), v.maxLength(256));
const count = v.pipe(v.number(), v.integer(), v.minValue(0), v.maxValue(Number.MAX_SAFE_INTEGER));

export const ModelManifestRequestSchema = v.object({
  type: v.literal("model_manifest_request"),
  requestId,
  name,
});

export const ModelChunkRequestSchema = v.object({
  type: v.literal("model_chunk_request"),
  requestId,
  name,
  path: v.pipe(v.string(), v.minLength(1), v.maxLength(1024)),
  offset: count,
  length: v.pipe(count, v.minValue(1), v.maxValue(MODEL_CHUNK_BYTES)),
});

export const ModelRequestSchema = v.variant("type", [ModelManifestRequestSchema, ModelChunkRequestSchema]);

export const ModelManifestReplySchema = v.object({
  type: v.literal("model_manifest"),
  requestId,
  manifest: ManifestSchema,
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
