/**
 * @module A model the router publishes, fetched over the node's own
 * connection to it (a `ModelChannel`): the manifest first, then each file
 * as a run of chunk requests from the offset already on disk, a few in
 * flight at once so the round trip does not bound the throughput. Every
 * chunk's SHA-256 is checked as it arrives.
 */
import { randomBytes } from "node:crypto";
import * as v from "valibot";
import { sha256Hex } from "../../core/sha256.ts";
import { safeText } from "../../core/terminal-text.ts";
import type { Manifest, ManifestFile } from "../../protocol/manifest.ts";
import { MODEL_CHUNK_BYTES, type ModelChannel, ModelReplySchema } from "../../protocol/model-transfer.ts";
import { parseManifest } from "../parse-manifest.ts";
import { type FetchedFile, type ModelSource, PullError } from "../source.ts";

export interface RouterSourceOptions {
  /** Chunk requests in flight at once. */
  window?: number;
  chunkBytes?: number;
}

function rid(): string {
  return randomBytes(8).toString("hex");
}

export class RouterSource implements ModelSource {
  readonly description: string;
  readonly #name: string;
  readonly #channel: ModelChannel;
  readonly #window: number;
  readonly #chunk: number;

  constructor(name: string, channel: ModelChannel, options: RouterSourceOptions = {}) {
    this.#name = name;
    this.#channel = channel;
    this.#window = Math.max(1, options.window ?? 4);
    this.#chunk = Math.min(MODEL_CHUNK_BYTES, Math.max(1, options.chunkBytes ?? MODEL_CHUNK_BYTES));
    this.description = `router://${name}`;
  }

  async #ask(request: Parameters<ModelChannel>[0], signal?: AbortSignal) {
    return this.#check(request, await this.#channel(request, signal));
  }

  /** A reply validated against the request it answers. */
  #check(request: Parameters<ModelChannel>[0], raw: unknown) {
    const parsed = v.safeParse(ModelReplySchema, raw);
    if (!parsed.success) {
      throw new PullError(
        "XIM_PULL_BAD_REPLY",
        `the router sent a malformed reply: ${safeText(parsed.issues[0].message, { maxLength: 300 })}`,
        {
          retryable: true,
        },
      );
    }
    const reply = parsed.output;
    if (reply.requestId !== request.requestId) {
      throw new PullError("XIM_PULL_BAD_REPLY", "the router answered a different request", {
        retryable: true,
      });
    }
    if (reply.type === "model_error") {
      const retryable = reply.code === "unavailable";
      throw new PullError(
        retryable ? "XIM_PULL_UNAVAILABLE" : "XIM_PULL_REFUSED",
        `router: ${safeText(reply.message, { maxLength: 300 })}`,
        {
          retryable,
          retryAfterMs: reply.retryAfterMs,
          hint:
            reply.code === "not_found" ? "list what the router publishes: xim router models list" : undefined,
        },
      );
    }
    return reply;
  }

  async manifest(signal?: AbortSignal): Promise<Manifest> {
    const request = { type: "model_manifest_request" as const, requestId: rid(), name: this.#name };
    const raw = await this.#channel(request, signal);
    // The file list is checked on its own first, so a hostile one fails at
    // once naming the bad path instead of being retried as a garbled reply.
    const answer = raw as { type?: unknown; requestId?: unknown; manifest?: unknown } | null;
    if (answer?.type === "model_manifest" && answer.requestId === request.requestId) {
      parseManifest(answer.manifest, this.description);
    }
    const reply = this.#check(request, raw);
    if (reply.type !== "model_manifest") {
      throw new PullError("XIM_PULL_BAD_REPLY", `the router answered a manifest request with ${reply.type}`, {
        retryable: true,
      });
    }
    return reply.manifest;
  }

  async fetchFile(file: ManifestFile, offset: number, signal?: AbortSignal): Promise<FetchedFile> {
    return { start: offset, body: this.#chunks(file, offset, signal) };
  }

  async *#chunks(file: ManifestFile, offset: number, signal?: AbortSignal): AsyncIterable<Uint8Array> {
    let next = offset;
    const inFlight: Array<{
      offset: number;
      length: number;
      reply: Promise<Awaited<ReturnType<RouterSource["ask"]>>>;
    }> = [];
    const launch = () => {
      while (inFlight.length < this.#window && next < file.size) {
        const at = next;
        const length = Math.min(this.#chunk, file.size - at);
        next += length;
        const reply = this.ask(
          {
            type: "model_chunk_request",
            requestId: rid(),
            name: this.#name,
            path: file.path,
            offset: at,
            length,
          },
          signal,
        );
        reply.catch(() => {}); // observed below, in order
        inFlight.push({ offset: at, length, reply });
      }
    };
    launch();
    while (inFlight.length > 0) {
      const head = inFlight.shift() as (typeof inFlight)[number];
      const reply = await head.reply;
      if (reply.type !== "model_chunk" || reply.path !== file.path || reply.offset !== head.offset) {
        throw new PullError(
          "XIM_PULL_BAD_REPLY",
          `the router sent the wrong chunk for ${safeText(file.path)}@${head.offset}`,
          {
            retryable: true,
          },
        );
      }
      if (sha256Hex(reply.data) !== reply.sha256) {
        throw new PullError("XIM_PULL_NETWORK", `${file.path}: the chunk at ${head.offset} arrived damaged`, {
          retryable: true,
        });
      }
      if (reply.data.byteLength !== head.length) {
        throw new PullError(
          "XIM_PULL_NETWORK",
          `${file.path}: the router sent ${reply.data.byteLength} bytes at ${head.offset}, not ${head.length}`,
          { retryable: true },
        );
      }
      yield reply.data;
      launch();
    }
  }

  /** One request and its validated reply (exposed to the chunk pipeline). */
  ask(request: Parameters<ModelChannel>[0], signal?: AbortSignal) {
    return this.#ask(request, signal);
  }
}
