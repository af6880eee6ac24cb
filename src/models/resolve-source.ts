/**
 * @module Turn what a person types after `xim pull` into a ModelSource:
 * `hf://org/name[@revision]` (a Hugging Face-style hub; HF_ENDPOINT and
 * HF_TOKEN honoured), `http(s)://.../manifest.json` (a file manifest).
 */
import { UsageError, XimError } from "../core/errors.ts";
import { Secret } from "../core/secret.ts";
import type { ModelSource } from "./source.ts";
import { DEFAULT_HF_ENDPOINT, HfSource } from "./sources/hf.ts";
import { HttpManifestSource } from "./sources/http-manifest.ts";

export interface ResolveOptions {
  env: Record<string, string | undefined>;
  /** Hub pulls: take every file instead of one weight format. */
  allFiles?: boolean;
}

export function resolveSource(ref: string, options: ResolveOptions): ModelSource {
  const { env } = options;
  if (ref.startsWith("hf://")) {
    const token = env.HF_TOKEN || env.HUGGING_FACE_HUB_TOKEN;
    return new HfSource(ref, {
      endpoint: env.HF_ENDPOINT || DEFAULT_HF_ENDPOINT,
      token: token ? new Secret(token) : undefined,
      allFiles: options.allFiles,
    });
  }
  if (/^https?:\/\//i.test(ref)) {
    let url: URL;
    try {
      url = new URL(ref);
    } catch {
      throw new UsageError(`'${ref}' is not a valid URL`, "give the address of a model manifest (JSON)");
    }
    return new HttpManifestSource(url.toString());
  }
  if (ref.startsWith("router://")) {
    throw new XimError(
      "XIM_UNAVAILABLE",
      `pulling from the router ('${ref}') is not available in this build yet`,
      { hint: "pull with hf://ORG/NAME or an https:// manifest URL" },
    );
  }
  throw new UsageError(
    `'${ref}' is not a model source`,
    "write hf://ORG/NAME[@REVISION] for a hub repository, or https://HOST/PATH/manifest.json for a file manifest",
  );
}
