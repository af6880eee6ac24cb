/**
 * @module Integrity of downloaded files. A file is accepted only when its
 * size equals the manifest's and its digest matches: SHA-256 where the
 * source gives one (manifests, LFS files on a hub), else the git blob id a
 * hub gives for small files. The hasher runs while bytes arrive; a resumed
 * transfer first hashes the bytes already on disk, so a 60 GB file is read
 * once per process, not once per attempt.
 */
import { createHash, type Hash } from "node:crypto";
import { createReadStream } from "node:fs";
import type { ManifestFile } from "../protocol/manifest.ts";

export interface DigestCheck {
  ok: boolean;
  kind: "sha256" | "git-sha1" | "size-only";
  expected?: string;
  actual?: string;
}

export class FileHasher {
  readonly #file: ManifestFile;
  readonly #hash: Hash | undefined;
  readonly #kind: DigestCheck["kind"];
  #bytes = 0;

  constructor(file: ManifestFile) {
    this.#file = file;
    if (file.sha256) {
      this.#kind = "sha256";
      this.#hash = createHash("sha256");
    } else if (file.gitSha1) {
      this.#kind = "git-sha1";
      this.#hash = createHash("sha1").update(`blob ${file.size}\0`);
    } else {
      this.#kind = "size-only";
      this.#hash = undefined;
    }
  }

  /** Bytes hashed so far: the offset a resumed transfer continues from. */
  get bytes(): number {
    return this.#bytes;
  }

  update(chunk: Uint8Array): void {
    this.#hash?.update(chunk);
    this.#bytes += chunk.byteLength;
  }

  /** Hash the first `length` bytes of a partial file left by an earlier attempt or process. */
  async updateFromFile(path: string, length: number): Promise<void> {
    if (length <= 0) return;
    for await (const chunk of createReadStream(path, { start: 0, end: length - 1 })) {
      this.update(chunk as Buffer);
    }
  }

  check(): DigestCheck {
    if (this.#bytes !== this.#file.size) {
      return { ok: false, kind: "size-only", expected: String(this.#file.size), actual: String(this.#bytes) };
    }
    if (!this.#hash) return { ok: true, kind: "size-only" };
    const expected = this.#kind === "sha256" ? this.#file.sha256 : this.#file.gitSha1;
    const actual = this.#hash.digest("hex");
    return { ok: actual === expected, kind: this.#kind, expected, actual };
  }
}

/** Verify a complete file on disk against its manifest entry. */
export async function verifyFile(path: string, file: ManifestFile): Promise<DigestCheck> {
  const hasher = new FileHasher(file);
  await hasher.updateFromFile(path, Number.MAX_SAFE_INTEGER);
  return hasher.check();
}

export function gitBlobSha1(data: Uint8Array): string {
  return createHash("sha1").update(`blob ${data.byteLength}\0`).update(data).digest("hex");
}
