/**
 * @module model-path: XEROTIER_AGENT_INITIAL_MODEL_PATH names a model vLLM
 * can load: a folder, with a config.json the planner can read, and weight
 * files. "Model not found" is a row of the Xerotier documentation's
 * troubleshooting table; without this check `xim run` found out only when
 * vLLM failed minutes into its start.
 */
import { stat } from "node:fs/promises";
import { isXimError, messageOf } from "../../core/errors.ts";
import { inspectModel } from "../../planner/inspect-model.ts";
import { type Check, fail, ok, skipped, warn } from "../check.ts";
import { gb } from "../model-size.ts";

const SET_PATH =
  "Set XEROTIER_AGENT_INITIAL_MODEL_PATH to a model folder (config.json beside the .safetensors files), fetch one with `xim pull hf://org/name`, or unset it and assign a model from the router (`xim router models assign`).";

export const modelPath: Check = {
  id: "model-path",
  group: "engine",
  title: "Initial model is loadable",
  async run(ctx) {
    const path = ctx.config.initialModelPath;
    if (!path) {
      return skipped(
        "no initial model (XEROTIER_AGENT_INITIAL_MODEL_PATH unset): the node waits for the router to assign one",
      );
    }
    let isDir: boolean;
    try {
      isDir = (await stat(path)).isDirectory();
    } catch (err) {
      const code = (err as NodeJS.ErrnoException).code;
      const why =
        code === "ENOENT"
          ? "does not exist"
          : code === "EACCES"
            ? "cannot be read (permission denied)"
            : messageOf(err);
      return fail(`XEROTIER_AGENT_INITIAL_MODEL_PATH=${path} ${why}`, SET_PATH);
    }
    if (!isDir)
      return fail(`XEROTIER_AGENT_INITIAL_MODEL_PATH=${path} is a file, not a model folder`, SET_PATH);
    let info: Awaited<ReturnType<typeof inspectModel>>;
    try {
      info = await inspectModel(path);
    } catch (err) {
      return fail(messageOf(err), (isXimError(err) && err.hint) || SET_PATH);
    }
    const shape = `${info.architecture}, ${info.numLayers} layers, hidden ${info.hiddenSize}${info.quantization ? `, ${info.quantization.method}` : ""}`;
    if (info.weightBytes === null) {
      if (ctx.config.engine === "sim")
        return ok(`${path}: ${shape}; no weight files (the simulated engine needs none)`);
      return fail(
        `${path}: ${shape}, but no weight files (.safetensors, .bin, .pt, .gguf) beside config.json`,
        "Download the whole model (`xim pull` verifies every file), not only its config.",
      );
    }
    if (info.weightBytes === 0)
      return warn(`${path}: the weight files are empty`, "Download the model again.");
    return ok(`${path}: ${shape}, ${gb(info.weightBytes)} of weights`);
  },
};
