/**
 * @module SHA-256 as lowercase hex, the one form xim compares and stores
 * (join key hashes, TLS and CURVE pins, API key hashes, model chunk and
 * file digests, the extracted addon's name). Text is hashed as UTF-8.
 * Streams of file bytes hash incrementally with node:crypto where they are
 * read (models/checksum.ts); this is for bytes already in memory.
 */
import { createHash } from "node:crypto";

export function sha256Hex(data: string | Uint8Array): string {
  return createHash("sha256").update(data).digest("hex");
}
