/**
 * @module The one gate a model's file list passes on its way in from any
 * source, turning a schema failure into a final pull error.
 */
import * as v from "valibot";
import { safeText } from "../core/terminal-text.ts";
import { type Manifest, ManifestSchema } from "../protocol/manifest.ts";
import { PullError } from "./source.ts";

/**
 * Validate what a source says a model is made of: the one gate every
 * source's file names pass (hub listings, HTTP manifests, the router's
 * manifest, a resumed pull's bookkeeping). A bad manifest is final: asking
 * again returns the same names.
 */
export function parseManifest(raw: unknown, from: string): Manifest {
  const parsed = v.safeParse(ManifestSchema, raw);
  if (parsed.success) return parsed.output;
  const issue = parsed.issues[0];
  const where = issue.path?.map((p) => p.key).join(".") || "(top level)";
  throw new PullError(
    "XIM_PULL_BAD_MANIFEST",
    `${from} lists a model that cannot be placed: ${safeText(where, { maxLength: 200 })}: ${issue.message}`,
    {
      retryable: false,
      hint: "a file path is relative to the model folder: no '..', '.', empty or absolute parts, no backslash or control characters, each name once (also ignoring case); fix the source's file list",
    },
  );
}
