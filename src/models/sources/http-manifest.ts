/**
 * @module A model published as a JSON file manifest over HTTP(S):
 * `{"name", "revision"?, "files": [{"path", "size", "sha256"?, "url"?}]}`.
 * A file's address is its `url` (resolved against the manifest's), or its
 * path under the manifest's folder, so a static web server holding the
 * model folder and a manifest.json beside it is a complete source.
 */
import * as v from "valibot";
import { type Manifest, type ManifestFile, ManifestSchema } from "../manifest.ts";
import { type FetchedFile, type ModelSource, PullError } from "../source.ts";
import { fetchFrom, getJson, shownUrl } from "./http.ts";

export interface HttpManifestOptions {
  headers?: Record<string, string>;
  now?: () => number;
}

function encodePath(path: string): string {
  return path.split("/").map(encodeURIComponent).join("/");
}

export class HttpManifestSource implements ModelSource {
  readonly description: string;
  readonly #url: string;
  readonly #options: HttpManifestOptions;

  constructor(url: string, options: HttpManifestOptions = {}) {
    this.#url = url;
    this.#options = options;
    this.description = shownUrl(url);
  }

  async manifest(signal?: AbortSignal): Promise<Manifest> {
    const body = await getJson(this.#url, { headers: this.#options.headers, signal, now: this.#options.now });
    const parsed = v.safeParse(ManifestSchema, body);
    if (!parsed.success) {
      const issue = parsed.issues[0];
      const where = issue.path?.map((p) => p.key).join(".") ?? "(top level)";
      throw new PullError(
        "XIM_PULL_BAD_MANIFEST",
        `the manifest at ${this.description} is not valid: ${where}: ${issue.message}`,
        {
          retryable: false,
          hint: 'a manifest is {"name": "...", "files": [{"path": "config.json", "size": 123, "sha256": "..."}]}',
        },
      );
    }
    return parsed.output;
  }

  fileUrl(file: ManifestFile): string {
    return new URL(file.url ?? encodePath(file.path), this.#url).toString();
  }

  fetchFile(file: ManifestFile, offset: number, signal?: AbortSignal): Promise<FetchedFile> {
    return fetchFrom(this.fileUrl(file), offset, {
      headers: this.#options.headers,
      signal,
      now: this.#options.now,
    });
  }
}
