/**
 * @module Validation of XEROTIER_AGENT_INITIAL_MODEL_PATH at start-up: the
 * folder must exist and hold a Hugging Face config.json and weights
 * (*.safetensors, *.bin, *.pt) or a single .gguf file. A wrong path is a
 * configuration error (exit 78) named before the engine spends minutes
 * failing to load it.
 */
import { readdir, stat } from "node:fs/promises";
import { join } from "node:path";
import { ExitCode, XimError } from "../core/errors.ts";

export interface LocalModel {
  path: string;
  /** config.json, or undefined for a lone .gguf file (which carries its own metadata). */
  configPath: string | undefined;
  /** Weight file names inside the folder, sorted. */
  weights: string[];
  format: "safetensors" | "pytorch" | "gguf";
}

const WEIGHT_PATTERNS: Array<[RegExp, LocalModel["format"]]> = [
  [/\.safetensors$/, "safetensors"],
  [/\.(bin|pt)$/, "pytorch"],
  [/\.gguf$/, "gguf"],
];

function invalid(path: string, what: string, hint: string): XimError {
  return new XimError("XIM_INITIAL_MODEL_INVALID", `XEROTIER_AGENT_INITIAL_MODEL_PATH=${path}: ${what}`, {
    hint,
    exitCode: ExitCode.config,
  });
}

/** Check a local model folder (or a .gguf file); throws XIM_INITIAL_MODEL_INVALID naming what is missing. */
/** The weight files of a folder, by format, in name order. */
async function weightsByFormat(
  path: string,
): Promise<{ names: string[]; found: Map<LocalModel["format"], string[]> }> {
  const names = (await readdir(path)).sort();
  const found = new Map<LocalModel["format"], string[]>();
  for (const name of names) {
    for (const [re, format] of WEIGHT_PATTERNS) {
      if (re.test(name)) found.set(format, [...(found.get(format) ?? []), name]);
    }
  }
  return { names, found };
}

/** A model folder: config.json with safetensors or PyTorch weights, or a lone .gguf file. */
async function folderModel(path: string): Promise<LocalModel> {
  const { names, found } = await weightsByFormat(path);
  const hasConfig = names.includes("config.json");
  const gguf = found.get("gguf") ?? [];
  const hfFormat = found.has("safetensors") ? "safetensors" : found.has("pytorch") ? "pytorch" : undefined;
  if (!hasConfig && hfFormat === undefined && gguf.length === 1) {
    return { path, configPath: undefined, weights: gguf, format: "gguf" };
  }
  const missing: string[] = [];
  if (!hasConfig) missing.push("config.json");
  if (hfFormat === undefined && gguf.length === 0)
    missing.push("weights (*.safetensors, *.bin, *.pt or a .gguf file)");
  if (missing.length > 0) {
    throw invalid(
      path,
      `the folder has no ${missing.join(" and no ")}`,
      "Download the complete model (e.g. `huggingface-cli download <repo> --local-dir <path>`) or fix the path.",
    );
  }
  const format = hfFormat ?? "gguf";
  return { path, configPath: join(path, "config.json"), weights: found.get(format) ?? [], format };
}

export async function validateInitialModelPath(path: string): Promise<LocalModel> {
  const info = await stat(path).catch(() => undefined);
  if (!info) {
    throw invalid(
      path,
      "the path does not exist",
      "Point it at a downloaded model folder (config.json + *.safetensors), or unset it to wait for the router.",
    );
  }
  if (info.isFile()) {
    if (path.endsWith(".gguf")) return { path, configPath: undefined, weights: [path], format: "gguf" };
    throw invalid(
      path,
      "is a file, not a model folder or .gguf file",
      "Point it at the folder that holds config.json.",
    );
  }
  if (!info.isDirectory()) {
    throw invalid(path, "is not a folder", "Point it at the folder that holds config.json.");
  }
  return folderModel(path);
}
