/**
 * @module The one check every file name a model source lists must pass
 * before a byte is written: a hub's `rfilename`/`path`, an HTTP manifest's
 * `path`, the router's manifest, and the bookkeeping a resumed pull reads
 * back from disk. A name is a relative path inside the model folder; the
 * list as a whole must be placeable on any filesystem (no two names that a
 * case-insensitive disk would merge, no name that is both a file and a
 * folder). The limits are far above what real models use (Hugging Face
 * repositories nest a few folders deep, names are tens of bytes) and far
 * below what the filesystem would reject with an obscure error.
 */

/** The longest file name accepted, in UTF-8 bytes (Linux PATH_MAX is 4096 for the whole path). */
export const MODEL_PATH_MAX_BYTES = 1024;
/** The longest single folder or file name, in UTF-8 bytes (NAME_MAX on Linux filesystems). */
export const MODEL_PATH_SEGMENT_MAX_BYTES = 255;
/** Folders a file may be nested in, plus one. */
export const MODEL_PATH_MAX_DEPTH = 32;
/** Files one model may list. */
export const MODEL_FILES_MAX = 100_000;
/** The file a pull keeps in its staging folder to resume; no model file may take its name. */
export const STAGING_BOOKKEEPING_FILE = ".xim-pull.json";

// C0 and C1 controls (NUL, ESC, newline...), DEL, and the bidirectional
// embedding/override/isolate marks that reorder what a terminal shows.
const UNPRINTABLE = /[\u0000-\u001f\u007f-\u009f\u202a-\u202e\u2066-\u2069]/;

function utf8Bytes(text: string): number {
  return Buffer.byteLength(text, "utf8");
}

/** Why `path` cannot name a file inside a model folder, or undefined when it can. */
export function modelPathProblem(path: string): string | undefined {
  if (path.length === 0) return "is empty";
  if (utf8Bytes(path) > MODEL_PATH_MAX_BYTES) return `is longer than ${MODEL_PATH_MAX_BYTES} bytes`;
  if (UNPRINTABLE.test(path)) return "contains a control character (NUL, escape, bidi override...)";
  if (path.includes("\\")) return "contains a backslash";
  if (path.startsWith("/")) return "is absolute";
  const segments = path.split("/");
  if (segments.length > MODEL_PATH_MAX_DEPTH) {
    return `is deeper than ${MODEL_PATH_MAX_DEPTH} folders`;
  }
  for (const segment of segments) {
    if (segment === "") return "has an empty segment ('//' or a trailing '/')";
    if (segment === "." || segment === "..") return `has a '${segment}' segment`;
    if (utf8Bytes(segment) > MODEL_PATH_SEGMENT_MAX_BYTES) {
      return `has a name longer than ${MODEL_PATH_SEGMENT_MAX_BYTES} bytes`;
    }
  }
  if (path === STAGING_BOOKKEEPING_FILE) return "is the name of xim's own bookkeeping file";
  return undefined;
}

/** The form two names share when a case-insensitive, Unicode-normalising disk would merge them. */
function folded(path: string): string {
  return path.normalize("NFC").toUpperCase().toLowerCase();
}

export interface PathListProblem {
  path: string;
  problem: string;
}

/**
 * Why a list of (individually valid) names cannot be placed together:
 * a name listed twice, two names that differ only in case, or a name that
 * is a file and also a folder holding another name.
 */
export function pathListProblem(paths: readonly string[]): PathListProblem | undefined {
  if (paths.length > MODEL_FILES_MAX) {
    return { path: paths[MODEL_FILES_MAX], problem: `is past the limit of ${MODEL_FILES_MAX} files` };
  }
  const files = new Map<string, string>();
  /** Every folder some name lives in (folded), with one name it holds. */
  const folders = new Map<string, string>();
  for (const path of paths) {
    const key = folded(path);
    const earlier = files.get(key);
    if (earlier !== undefined) {
      return {
        path,
        problem: earlier === path ? "is listed twice" : `and "${earlier}" differ only in case`,
      };
    }
    files.set(key, path);
    const segments = key.split("/");
    for (let i = 1; i < segments.length; i++) {
      const folder = segments.slice(0, i).join("/");
      if (!folders.has(folder)) folders.set(folder, path);
    }
  }
  for (const [key, path] of files) {
    const inside = folders.get(key);
    if (inside !== undefined) return { path, problem: `is a file and also a folder (of "${inside}")` };
  }
  return undefined;
}
