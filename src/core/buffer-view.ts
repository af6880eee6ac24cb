/** @module Bytes as a Buffer without copying them. */

/** A Buffer over the same memory as `bytes` (itself when it is one already): Buffer's methods, no copy. */
export function bufferView(bytes: Uint8Array): Buffer {
  return Buffer.isBuffer(bytes) ? bytes : Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength);
}
