/**
 * @module The router's side of model distribution: the models it publishes
 * (`xim router models add NAME PATH`) and the answers to nodes' manifest
 * and chunk requests. Adding a model hashes every file once and keeps the
 * manifest in the router's state folder; a file that changes on disk
 * afterwards (size or mtime) is refused rather than sent with a stale digest.
 */
import { createHash, randomBytes } from "node:crypto";
import { createReadStream } from "node:fs";
import { open, readdir, readFile, rm, stat } from "node:fs/promises";
import { join, relative, resolve, sep } from "node:path";
import * as v from "valibot";
import { ensurePrivateDir, writeFileAtomic } from "../core/atomic-file.ts";
import { XimError } from "../core/errors.ts";
import { sha256Hex } from "../core/sha256.ts";
import { type Manifest, ManifestSchema, manifestBytes } from "../protocol/manifest.ts";
import {
  MODEL_CHUNK_BYTES,
  type ModelReply,
  ModelRequestSchema,
  newReceipt,
} from "../protocol/model-transfer.ts";
import { modelKey } from "./cache.ts";

const PublishedSchema = v.object({
  name: v.string(),
  dir: v.string(),
  addedAt: v.string(),
  manifest: ManifestSchema,
  /** Size and mtime of each file when hashed, to notice later changes. */
  stamps: v.record(v.string(), v.object({ size: v.number(), mtimeMs: v.number() })),
});
export type PublishedModel = v.InferOutput<typeof PublishedSchema>;

async function hashFile(path: string): Promise<string> {
  const hash = createHash("sha256");
  for await (const chunk of createReadStream(path)) hash.update(chunk as Buffer);
  return hash.digest("hex");
}

export class ModelLibrary {
  readonly #dir: string;
  readonly #now: () => number;

  /** `stateDir`: the router's state folder; models are recorded under `<stateDir>/models/`. */
  constructor(stateDir: string, now: () => number = Date.now) {
    this.#dir = join(stateDir, "models");
    this.#now = now;
  }

  #recordPath(name: string): string {
    return join(this.#dir, `${modelKey(name)}.json`);
  }

  /** Publish a local model folder under `name`: every regular file, hashed. */
  async add(name: string, folder: string): Promise<PublishedModel> {
    modelKey(name);
    const dir = resolve(folder);
    const info = await stat(dir).catch(() => undefined);
    if (!info?.isDirectory()) {
      throw new XimError("XIM_MODEL_NOT_FOUND", `${folder} is not a folder`, {
        hint: "give the model folder (config.json beside the weights)",
      });
    }
    const files: Manifest["files"] = [];
    const stamps: PublishedModel["stamps"] = {};
    const entries = await readdir(dir, { withFileTypes: true, recursive: true });
    for (const e of entries.sort((a, b) =>
      join(a.parentPath, a.name).localeCompare(join(b.parentPath, b.name)),
    )) {
      if (!e.isFile()) continue;
      const full = join(e.parentPath, e.name);
      const path = relative(dir, full).split(sep).join("/");
      if (path.split("/").some((s) => s.startsWith("."))) continue;
      const s = await stat(full);
      files.push({ path, size: s.size, sha256: await hashFile(full) });
      stamps[path] = { size: s.size, mtimeMs: s.mtimeMs };
    }
    if (files.length === 0) throw new XimError("XIM_MODEL_INVALID", `${folder} holds no files to publish`);
    const manifest = { name, revision: randomBytes(8).toString("hex"), files };
    // Nodes accept only names that pass the pull's file-name check: refuse the rest now, not on every node.
    const checked = v.safeParse(ManifestSchema, manifest);
    if (!checked.success) {
      throw new XimError("XIM_MODEL_INVALID", `${folder} cannot be published: ${checked.issues[0].message}`, {
        hint: "rename the file (nodes refuse names with control characters, names differing only in case, or deeper than 32 folders)",
      });
    }
    const record: PublishedModel = {
      name,
      dir,
      addedAt: new Date(this.#now()).toISOString(),
      manifest,
      stamps,
    };
    await ensurePrivateDir(this.#dir);
    await writeFileAtomic(this.#recordPath(name), `${JSON.stringify(record, null, 2)}\n`);
    return record;
  }

  async get(name: string): Promise<PublishedModel | undefined> {
    try {
      const parsed = v.safeParse(PublishedSchema, JSON.parse(await readFile(this.#recordPath(name), "utf8")));
      return parsed.success ? parsed.output : undefined;
    } catch {
      return undefined;
    }
  }

  async list(): Promise<Array<{ name: string; dir: string; files: number; bytes: number; addedAt: string }>> {
    const names = await readdir(this.#dir).catch(() => [] as string[]);
    const out = [];
    for (const f of names.filter((n) => n.endsWith(".json")).sort()) {
      try {
        const r = v.parse(PublishedSchema, JSON.parse(await readFile(join(this.#dir, f), "utf8")));
        out.push({
          name: r.name,
          dir: r.dir,
          files: r.manifest.files.length,
          bytes: manifestBytes(r.manifest),
          addedAt: r.addedAt,
        });
      } catch {
        // an unreadable record is skipped; `add` rewrites it
      }
    }
    return out;
  }

  async remove(name: string): Promise<boolean> {
    const existed = (await this.get(name)) !== undefined;
    await rm(this.#recordPath(name), { force: true });
    return existed;
  }

  /** Answer one node request; never throws (a bad request gets a model_error reply). */
  async handle(raw: unknown): Promise<ModelReply> {
    const parsed = v.safeParse(ModelRequestSchema, raw);
    const requestId = (raw as { requestId?: unknown })?.requestId;
    const rid = typeof requestId === "string" && requestId.length > 0 ? requestId.slice(0, 64) : "unknown";
    if (!parsed.success) {
      return { type: "model_error", requestId: rid, code: "bad_request", message: parsed.issues[0].message };
    }
    const req = parsed.output;
    const model = await this.get(req.name);
    if (!model) {
      return {
        type: "model_error",
        requestId: rid,
        code: "not_found",
        message: `the router publishes no model named ${req.name}`,
      };
    }
    if (req.type === "model_manifest_request")
      return { type: "model_manifest", requestId: rid, manifest: model.manifest, receipt: newReceipt() };
    const file = model.manifest.files.find((f) => f.path === req.path);
    if (!file) {
      return {
        type: "model_error",
        requestId: rid,
        code: "not_found",
        message: `${req.name} has no file ${req.path}`,
      };
    }
    const full = join(model.dir, ...file.path.split("/"));
    try {
      const s = await stat(full);
      const stamp = model.stamps[file.path];
      if (s.size !== stamp?.size || s.mtimeMs !== stamp.mtimeMs) {
        return {
          type: "model_error",
          requestId: rid,
          code: "changed",
          message: `${file.path} of ${req.name} changed on the router since it was published; run 'xim router models add' again`,
        };
      }
      const length = Math.min(req.length, MODEL_CHUNK_BYTES, Math.max(0, file.size - req.offset));
      const data = Buffer.alloc(length);
      const handle = await open(full, "r");
      let read = 0;
      try {
        while (read < length) {
          const { bytesRead } = await handle.read(data, read, length - read, req.offset + read);
          if (bytesRead === 0) break;
          read += bytesRead;
        }
      } finally {
        await handle.close();
      }
      const chunk = data.subarray(0, read);
      return {
        type: "model_chunk",
        requestId: rid,
        name: req.name,
        path: file.path,
        offset: req.offset,
        data: chunk,
        sha256: sha256Hex(chunk),
        receipt: newReceipt(),
      };
    } catch (err) {
      return {
        type: "model_error",
        requestId: rid,
        code: "unavailable",
        message: `cannot read ${file.path}: ${(err as Error).message}`,
        retryAfterMs: 1000,
      };
    }
  }
}
