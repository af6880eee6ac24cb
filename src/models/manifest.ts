/**
 * @module What a model is made of before it is downloaded: a list of files,
 * each with its size and, where the source knows it, a digest. Every source
 * (router, HTTP manifest, Hugging Face-style hub) produces this shape, and
 * the cache records it beside the placed model so a later pull can tell
 * whether the files on disk are already the ones wanted.
 */
import { posix } from "node:path";
import * as v from "valibot";

/** A relative path inside the model folder: no absolute paths, no "..", no empty segments. */
const RelativePath = v.pipe(
  v.string(),
  v.minLength(1),
  v.check(
    (p) =>
      !p.startsWith("/") &&
      !p.includes("\\") &&
      !p.includes("\0") &&
      posix.normalize(p) === p &&
      !p.split("/").some((s) => s === ".." || s === "." || s === ""),
    "expected a relative path inside the model folder (no '..', no leading '/')",
  ),
);

const Hex = (len: number) => v.pipe(v.string(), v.toLowerCase(), v.regex(new RegExp(`^[0-9a-f]{${len}}$`)));

export const ManifestFileSchema = v.object({
  path: RelativePath,
  size: v.pipe(v.number(), v.integer(), v.minValue(0)),
  /** SHA-256 of the whole file, lower-case hex. */
  sha256: v.optional(Hex(64)),
  /** Git blob id (SHA-1 of "blob <size>\0" + content): what a hub gives for small non-LFS files. */
  gitSha1: v.optional(Hex(40)),
  /** Where to fetch it, when the source does not derive the address from the path. */
  url: v.optional(v.string()),
});

export const ManifestSchema = v.object({
  /** The name the model is cached and served under ("org/name" or a router-assigned name). */
  name: v.pipe(v.string(), v.minLength(1)),
  /** A version the source pins (a commit id, an upload id); informational. */
  revision: v.optional(v.string()),
  files: v.pipe(
    v.array(ManifestFileSchema),
    v.minLength(1, "a model manifest lists at least one file"),
    v.check((files) => new Set(files.map((f) => f.path)).size === files.length, "file paths must be unique"),
  ),
});

export type ManifestFile = v.InferOutput<typeof ManifestFileSchema>;
export type Manifest = v.InferOutput<typeof ManifestSchema>;

export function manifestBytes(manifest: Pick<Manifest, "files">): number {
  return manifest.files.reduce((sum, f) => sum + f.size, 0);
}

/** Two manifests describe the same bytes when every file has the same path, size and digests. */
export function sameFiles(a: Pick<Manifest, "files">, b: Pick<Manifest, "files">): boolean {
  if (a.files.length !== b.files.length) return false;
  const byPath = new Map(b.files.map((f) => [f.path, f]));
  return a.files.every((f) => {
    const g = byPath.get(f.path);
    return (
      g !== undefined &&
      g.size === f.size &&
      (g.sha256 ?? null) === (f.sha256 ?? null) &&
      (g.gitSha1 ?? null) === (f.gitSha1 ?? null)
    );
  });
}
