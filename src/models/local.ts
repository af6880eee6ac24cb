/**
 * @module A model folder given directly (XEROTIER_AGENT_INITIAL_MODEL_PATH):
 * served as it is, never copied or evicted, so it must already be complete:
 * a config.json and weights vLLM can load. Checked before the engine
 * starts, so a wrong path is one clear error instead of a vLLM traceback.
 */
import { readdir, stat } from "node:fs/promises";
import { join, resolve } from "node:path";
import { XimError } from "../core/errors.ts";

const WEIGHTS = /\.(safetensors|bin|pt|pth|gguf)$/;

export interface LocalModel {
  path: string;
  weightFiles: number;
}

export async function checkLocalModel(path: string): Promise<LocalModel> {
  const dir = resolve(path);
  const info = await stat(dir).catch(() => undefined);
  if (!info) {
    throw new XimError("XIM_MODEL_NOT_FOUND", `the model folder ${path} does not exist`, {
      hint: "XEROTIER_AGENT_INITIAL_MODEL_PATH must name a folder already on disk (pull it first: xim pull)",
    });
  }
  if (info.isFile() && path.endsWith(".gguf")) return { path: dir, weightFiles: 1 };
  if (!info.isDirectory()) {
    throw new XimError("XIM_MODEL_INVALID", `${path} is not a folder`, {
      hint: "give the model folder (config.json beside the weights), or a single .gguf file",
    });
  }
  const entries = await readdir(dir);
  if (!entries.includes("config.json")) {
    throw new XimError("XIM_MODEL_INVALID", `${path} has no config.json`, {
      hint: "vLLM loads a Hugging Face model folder: config.json, tokenizer files and the weights",
    });
  }
  const weights = entries.filter((e) => WEIGHTS.test(e));
  if (weights.length === 0) {
    throw new XimError(
      "XIM_MODEL_INVALID",
      `${path} has config.json but no weights (.safetensors, .bin, .pt or .gguf)`,
      {
        hint: "the download may be incomplete: pull the model again",
      },
    );
  }
  for (const w of weights) {
    if ((await stat(join(dir, w))).size === 0) {
      throw new XimError("XIM_MODEL_INVALID", `${join(path, w)} is empty`, {
        hint: "the download was cut: pull the model again",
      });
    }
  }
  return { path: dir, weightFiles: weights.length };
}
