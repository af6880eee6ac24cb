/**
 * @module A Hugging Face-style hub: `hf://org/name@revision` (revision
 * defaults to main) against `HF_ENDPOINT` (default https://huggingface.co),
 * with `HF_TOKEN` sent as a bearer token. The file list and sizes come
 * from `/api/models/{repo}/revision/{rev}?blobs=true` (siblings with size,
 * blob id and LFS sha256), falling back to the tree API's `lfs.oid` when
 * a hub omits sizes; files are fetched from `/{repo}/resolve/{commit}/{path}`
 * pinned to the commit the listing named, so a push during a pull cannot
 * mix two revisions. Like vLLM, only one weight format is taken: safetensors
 * when present, else .bin, else .pt.
 */
import * as v from "valibot";
import { UsageError } from "../../core/errors.ts";
import type { Secret } from "../../core/secret.ts";
import { safeText } from "../../core/terminal-text.ts";
import type { Manifest, ManifestFile } from "../../protocol/manifest.ts";
import { MODEL_FILES_MAX } from "../../protocol/model-paths.ts";
import { parseManifest } from "../parse-manifest.ts";
import { type FetchedFile, type ModelSource, PullError } from "../source.ts";
import { fetchFrom, getJson, getJsonPage, shownUrl } from "./http.ts";

export const DEFAULT_HF_ENDPOINT = "https://huggingface.co";

export interface HfRef {
  repo: string;
  revision: string;
}

/** Parse `hf://org/name[@revision]`; throws a usage error naming the accepted form. */
export function parseHfRef(ref: string): HfRef {
  const m = /^hf:\/\/([A-Za-z0-9][\w.-]*(?:\/[A-Za-z0-9][\w.-]*)?)(?:@([^\s@]+))?$/.exec(ref);
  if (!m) {
    throw new UsageError(
      `'${shownUrl(ref)}' is not a hub reference`,
      "write hf://ORG/NAME or hf://ORG/NAME@REVISION (a branch, tag or commit id)",
    );
  }
  return { repo: m[1], revision: m[2] ?? "main" };
}

const LfsSchema = v.object({
  sha256: v.optional(v.string()),
  oid: v.optional(v.string()),
  size: v.optional(v.number()),
});

const RevisionSchema = v.object({
  sha: v.optional(v.string()),
  siblings: v.array(
    v.object({
      rfilename: v.string(),
      size: v.optional(v.number()),
      blobId: v.optional(v.string()),
      lfs: v.optional(v.nullable(LfsSchema)),
    }),
  ),
});

const TreeSchema = v.array(
  v.object({
    type: v.string(),
    path: v.string(),
    size: v.optional(v.number()),
    oid: v.optional(v.string()),
    lfs: v.optional(v.nullable(LfsSchema)),
  }),
);

const WEIGHT_KINDS = [".safetensors", ".bin", ".pt"];
const WEIGHT_SUFFIXES = [".safetensors", ".bin", ".pt", ".pth", ".ckpt", ".h5", ".msgpack", ".gguf", ".onnx"];

/** Keep one weight format, as vLLM's own download does; other files (config, tokenizer) stay. */
export function selectFiles(files: ManifestFile[]): ManifestFile[] {
  const kind = WEIGHT_KINDS.find((k) => files.some((f) => f.path.endsWith(k)));
  return files.filter((f) => {
    const suffix = WEIGHT_SUFFIXES.find((s) => f.path.endsWith(s));
    return suffix === undefined || suffix === kind;
  });
}

export interface HfSourceOptions {
  endpoint?: string;
  token?: Secret;
  /** Take every file, not one weight format. */
  allFiles?: boolean;
  now?: () => number;
}

function encodePath(path: string): string {
  return path.split("/").map(encodeURIComponent).join("/");
}

export class HfSource implements ModelSource {
  readonly description: string;
  readonly ref: HfRef;
  readonly #endpoint: string;
  readonly #options: HfSourceOptions;
  #commit: string | undefined;

  constructor(ref: string | HfRef, options: HfSourceOptions = {}) {
    this.ref = typeof ref === "string" ? parseHfRef(ref) : ref;
    this.#endpoint = (options.endpoint ?? DEFAULT_HF_ENDPOINT).replace(/\/+$/, "");
    this.#options = options;
    // HF_ENDPOINT may carry a mirror's user:password: never shown.
    this.description = `hf://${this.ref.repo}@${this.ref.revision} (${shownUrl(this.#endpoint)})`;
  }

  #headers(): Record<string, string> {
    const token = this.#options.token?.reveal();
    return token ? { authorization: `Bearer ${token}` } : {};
  }

  #getOptions(signal?: AbortSignal) {
    return {
      headers: this.#headers(),
      signal,
      now: this.#options.now,
      authHint: this.#options.token
        ? "HF_TOKEN was sent and refused: check it has read access to this repository (gated models need the licence accepted)"
        : "the repository is private or gated: set HF_TOKEN to a token with read access",
    };
  }

  #get(url: string, signal?: AbortSignal) {
    return getJson(url, this.#getOptions(signal));
  }

  #bad(what: string, issues: v.BaseIssue<unknown>[]): PullError {
    return new PullError(
      "XIM_PULL_BAD_MANIFEST",
      `${this.description}: unexpected ${what} (${safeText(issues[0].message, { maxLength: 300 })})`,
      {
        retryable: false,
        hint: "HF_ENDPOINT must point at a Hugging Face-compatible hub",
      },
    );
  }

  async manifest(signal?: AbortSignal): Promise<Manifest> {
    const { repo, revision } = this.ref;
    const url = `${this.#endpoint}/api/models/${repo}/revision/${encodeURIComponent(revision)}?blobs=true`;
    const parsed = v.safeParse(RevisionSchema, await this.#get(url, signal));
    if (!parsed.success) throw this.#bad("model info", parsed.issues);
    this.#commit = parsed.output.sha ?? revision;
    let files: ManifestFile[];
    if (parsed.output.siblings.every((s) => s.size !== undefined)) {
      files = parsed.output.siblings.map((s) => ({
        path: s.rfilename,
        size: s.lfs?.size ?? (s.size as number),
        sha256: s.lfs?.sha256 ?? s.lfs?.oid,
        gitSha1: s.lfs ? undefined : s.blobId,
      }));
    } else {
      files = await this.#tree(signal);
    }
    const chosen = this.#options.allFiles ? files : selectFiles(files);
    // The hub's names reach the disk: they pass the same check as every other source's.
    return parseManifest({ name: repo, revision: this.#commit, files: chosen }, this.description);
  }

  async #tree(signal?: AbortSignal): Promise<ManifestFile[]> {
    const { repo } = this.ref;
    let url: string | undefined =
      `${this.#endpoint}/api/models/${repo}/tree/${encodeURIComponent(this.#commit ?? "main")}?recursive=true`;
    const entries: v.InferOutput<typeof TreeSchema> = [];
    // The tree API pages big repositories (Link: <...>; rel="next").
    for (let page = 0; url && page < 1000; page++) {
      const { body, next } = await getJsonPage(url, this.#getOptions(signal));
      const parsed = v.safeParse(TreeSchema, body);
      if (!parsed.success) throw this.#bad("file tree", parsed.issues);
      entries.push(...parsed.output);
      if (entries.length > MODEL_FILES_MAX) {
        throw new PullError(
          "XIM_PULL_TOO_LARGE",
          `${this.description}: the file tree lists more than ${MODEL_FILES_MAX} entries, the limit for one model`,
          { retryable: false, hint: "HF_ENDPOINT must point at a Hugging Face-compatible hub" },
        );
      }
      url = next;
    }
    return entries
      .filter((e) => e.type === "file")
      .map((e) => ({
        path: e.path,
        size: e.lfs?.size ?? e.size ?? 0,
        sha256: e.lfs?.sha256 ?? e.lfs?.oid,
        gitSha1: e.lfs ? undefined : e.oid,
      }));
  }

  fileUrl(file: ManifestFile): string {
    const rev = encodeURIComponent(this.#commit ?? this.ref.revision);
    return `${this.#endpoint}/${this.ref.repo}/resolve/${rev}/${encodePath(file.path)}`;
  }

  fetchFile(file: ManifestFile, offset: number, signal?: AbortSignal): Promise<FetchedFile> {
    return fetchFrom(this.fileUrl(file), offset, {
      headers: this.#headers(),
      signal,
      now: this.#options.now,
      authHint: "set HF_TOKEN to a token with read access to this repository",
    });
  }
}
