/**
 * @module Turn what a person types after `xim pull` into a ModelSource:
 * `hf://org/name[@revision]` (a Hugging Face-style hub; HF_ENDPOINT and
 * HF_TOKEN honoured), `http(s)://.../manifest.json` (a file manifest),
 * `router://NAME` (a model the router publishes, over the node's own
 * connection, which only a running node has).
 */
import { UsageError, XimError } from "../core/errors.ts";
import { Secret } from "../core/secret.ts";
import type { ModelChannel } from "../protocol/model-transfer.ts";
import type { ModelSource } from "./source.ts";
import { DEFAULT_HF_ENDPOINT, HfSource } from "./sources/hf.ts";
import { shownUrl } from "./sources/http.ts";
import { HttpManifestSource } from "./sources/http-manifest.ts";
import { RouterSource } from "./sources/router.ts";

export interface ResolveOptions {
  env: Record<string, string | undefined>;
  /** Hub pulls: take every file instead of one weight format. */
  allFiles?: boolean;
  /** The node's connection to its router, when there is one (inside `xim run`). */
  routerChannel?: ModelChannel;
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
      throw new UsageError(
        `'${shownUrl(ref)}' is not a valid URL`,
        "give the address of a model manifest (JSON)",
      );
    }
    return new HttpManifestSource(url.toString());
  }
  if (ref.startsWith("router://")) {
    const name = ref.slice("router://".length);
    if (!name) throw new UsageError(`'${shownUrl(ref)}' names no model`, "write router://NAME");
    if (options.routerChannel) return new RouterSource(name, options.routerChannel);
    throw new XimError(
      "XIM_UNAVAILABLE",
      `'${shownUrl(ref)}': models published by the router travel over the node's own router connection, which this command does not open`,
      {
        hint: "the running node (xim run) pulls the models its router assigns; here, pull with hf://ORG/NAME or an https:// manifest URL",
      },
    );
  }
  throw new UsageError(
    `'${shownUrl(ref)}' is not a model source`,
    "write hf://ORG/NAME[@REVISION] for a hub repository, or https://HOST/PATH/manifest.json for a file manifest",
  );
}
