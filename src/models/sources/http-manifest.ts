/**
 * @module A model published as a JSON file manifest over HTTP(S):
 * `{"name", "revision"?, "files": [{"path", "size", "sha256"?, "url"?}]}`.
 * A file's address is its `url` (resolved against the manifest's), or its
 * path under the manifest's folder, so a static web server holding the
 * model folder and a manifest.json beside it is a complete source.
 */
import type { Manifest, ManifestFile } from "../../protocol/manifest.ts";
import { parseManifest } from "../parse-manifest.ts";
import type { FetchedFile, ModelSource } from "../source.ts";
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
    return parseManifest(body, `the manifest at ${this.description}`);
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
