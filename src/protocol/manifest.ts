/**
 * @module What a model is made of before it is downloaded: a list of files,
 * each with its size and, where the source knows it, a digest. Every source
 * (router, HTTP manifest, Hugging Face-style hub) produces this shape, and
 * the cache records it beside the placed model so a later pull can tell
 * whether the files on disk are already the ones wanted.
 */
import * as v from "valibot";
import { safeText } from "../core/terminal-text.ts";
import { MODEL_FILES_MAX, modelPathProblem, pathListProblem } from "./model-paths.ts";

/** A relative path inside the model folder (model-paths.ts says exactly what passes). */
const RelativePath = v.pipe(
  v.string(),
  v.check(
    (p) => modelPathProblem(p) === undefined,
    (issue) => `${shownPath(String(issue.input))} ${modelPathProblem(String(issue.input))}`,
  ),
);

/** A file name from a peer, quoted and made safe to print (and short enough to read). */
function shownPath(path: string): string {
  return `"${safeText(path, { maxLength: 120 })}"`;
}

const Hex = (len: number) => v.pipe(v.string(), v.toLowerCase(), v.regex(new RegExp(`^[0-9a-f]{${len}}$`)));

export const ManifestFileSchema = v.object({
  path: RelativePath,
  size: v.pipe(v.number(), v.integer(), v.minValue(0), v.maxValue(Number.MAX_SAFE_INTEGER)),
  /** SHA-256 of the whole file, lower-case hex. */
  sha256: v.optional(Hex(64)),
  /** Git blob id (SHA-1 of "blob <size>\0" + content): what a hub gives for small non-LFS files. */
  gitSha1: v.optional(Hex(40)),
  /** Where to fetch it, when the source does not derive the address from the path. */
  url: v.optional(v.pipe(v.string(), v.maxLength(8192))),
});

export const ManifestSchema = v.object({
  /** The name the model is cached and served under ("org/name" or a router-assigned name). */
  name: v.pipe(v.string(), v.minLength(1), v.maxLength(256)),
  /** A version the source pins (a commit id, an upload id); informational. */
  revision: v.optional(v.pipe(v.string(), v.maxLength(256))),
  files: v.pipe(
    v.array(ManifestFileSchema),
    v.minLength(1, "a model manifest lists at least one file"),
    v.maxLength(MODEL_FILES_MAX, `a model manifest lists at most ${MODEL_FILES_MAX} files`),
    v.check(
      (files) => pathListProblem(files.map((f) => f.path)) === undefined,
      (issue) => {
        const found = pathListProblem((issue.input as ManifestFile[]).map((f) => f.path));
        return found ? `${shownPath(found.path)} ${found.problem}` : "the file list cannot be placed";
      },
    ),
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
