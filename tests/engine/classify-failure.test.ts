import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { describe, test } from "node:test";
import { classifyFailure } from "../../src/engine/classify-failure.ts";
import { START_FAILURES, VLLM_MESSAGE_FILES, VLLM_MESSAGES } from "../../src/engine/vllm-messages.ts";

function fixture(name: string): string {
  return readFileSync(new URL(`../fixtures/vllm/${name}`, import.meta.url), "utf8");
}

function lines(...texts: string[]): string[] {
  return texts.join("").split("\n").filter(Boolean);
}

describe("classifying engine failures from vLLM's real messages", () => {
  test("the messages embedded for `xim engine-sim --fail-at-start` are the captured fixture bytes", () => {
    for (const [key, file] of Object.entries(VLLM_MESSAGE_FILES)) {
      assert.equal(VLLM_MESSAGES[key as keyof typeof VLLM_MESSAGES], fixture(file), file);
    }
  });

  const cases: Array<[string, string[], string]> = [
    ["torch OOM in EngineCore", [fixture("torch-oom-v1-enginecore.log")], "out-of-memory"],
    ["torch OOM in a worker", [fixture("torch-oom-v1-worker.log")], "out-of-memory"],
    [
      "CUDA error: out of memory without capture context",
      [fixture("cudagraph-capture-oom-v1.log")],
      "out-of-memory",
    ],
    [
      "out of memory while capturing CUDA graphs",
      [fixture("cudagraph-capture-info-v0.log"), fixture("cudagraph-capture-oom-v1.log")],
      "cuda-graph-capture",
    ],
    [
      "KV cache too small for max-model-len (V1, recent)",
      [fixture("max-model-len-v1-estimated-recent.log")],
      "max-model-len",
    ],
    ["KV cache too small for max-model-len (V0)", [fixture("max-model-len-v0.log")], "max-model-len"],
    ["quantization mismatch", [fixture("quantization-mismatch.log")], "quantization-mismatch"],
    ["invalid repository or local folder", [fixture("model-not-found-v1.log")], "model-not-found"],
    ["HF repo id validation", [fixture("model-not-found-hf-validation.log")], "model-not-found"],
    ["port already bound", [fixture("port-in-use-v0.log")], "port-in-use"],
    ["the weights leave no KV cache block", [fixture("no-cache-blocks.log")], "no-kv-cache-memory"],
    [
      "quantization method below its minimum capability",
      [fixture("quantization-capability.log")],
      "quantization-unsupported-gpu",
    ],
    [
      "quantization method the installed vLLM lacks",
      [fixture("quantization-unknown.log")],
      "quantization-unknown",
    ],
    [
      "max_model_len above the model's derived maximum",
      [fixture("max-model-len-user-specified.log")],
      "max-model-len-above-model",
    ],
    [
      "vLLM's engine-ready timeout (VLLM_ENGINE_READY_TIMEOUT_S)",
      [fixture("engine-ready-timeout.log")],
      "engine-ready-timeout",
    ],
    [
      "EAGLE-3 on an unsupported target model",
      [fixture("eagle3-unsupported-model.log")],
      "speculative-unsupported-model",
    ],
    [
      "suffix decoding without arctic-inference",
      [fixture("suffix-arctic-inference-missing.log")],
      "speculative-package-missing",
    ],
    ["LMCache not importable by vLLM (composed)", [fixture("lmcache-module-missing.log")], "lmcache-failed"],
    [
      "LMCache's Redis refusing connections (composed)",
      [fixture("lmcache-redis-refused.log")],
      "lmcache-failed",
    ],
    [
      "no KV cache block after a torch OOM warning elsewhere: the weights are the cause",
      [fixture("no-cache-blocks.log"), fixture("torch-oom-v1-worker.log")],
      "no-kv-cache-memory",
    ],
    ["nothing recognisable", ["INFO starting", "Traceback (most recent call last):"], "unknown"],
  ];
  const hints = new Map<string, string>();
  for (const [name, texts, cause] of cases) {
    test(`${name} -> ${cause}`, () => {
      const c = classifyFailure(lines(...texts));
      assert.equal(c.cause, cause);
      assert.ok(c.hint.length > 0);
      // Each cause has its own remedy: no two causes share a hint.
      for (const [other, hint] of hints)
        if (other !== cause) assert.notEqual(c.hint, hint, `${cause} and ${other}`);
      hints.set(cause, c.hint);
      if (cause !== "unknown") assert.ok(c.evidence, "the deciding line is kept");
    });
  }

  test("each --fail-at-start kind prints text the classifier recognises as that kind", () => {
    const want: Record<keyof typeof START_FAILURES, string> = {
      oom: "out-of-memory",
      "cuda-graph": "cuda-graph-capture",
      "model-not-found": "model-not-found",
      "port-in-use": "port-in-use",
      "max-model-len": "max-model-len",
      "quantization-mismatch": "quantization-mismatch",
      "no-kv-cache-memory": "no-kv-cache-memory",
      "quantization-unsupported-gpu": "quantization-unsupported-gpu",
      "quantization-unknown": "quantization-unknown",
      "max-model-len-above-model": "max-model-len-above-model",
      "engine-ready-timeout": "engine-ready-timeout",
      "speculative-unsupported-model": "speculative-unsupported-model",
      "speculative-package-missing": "speculative-package-missing",
      "lmcache-failed": "lmcache-failed",
    };
    for (const [kind, keys] of Object.entries(START_FAILURES)) {
      const text = keys.map((k) => VLLM_MESSAGES[k]);
      assert.equal(classifyFailure(lines(...text)).cause, want[kind as keyof typeof START_FAILURES], kind);
    }
  });

  test("a timeout is a start-up timeout, unless the engine was stuck in CUDA graph capture", () => {
    assert.equal(classifyFailure(["INFO loading weights"], { timedOut: true }).cause, "startup-timeout");
    assert.equal(
      classifyFailure(lines(fixture("cudagraph-capture-info-v0.log")), { timedOut: true }).cause,
      "cuda-graph-capture",
    );
    assert.equal(
      classifyFailure(
        [
          "INFO Capturing CUDA graphs (mixed prefill-decode, PIECEWISE)",
          "INFO Graph capturing finished in 5 secs",
        ],
        {
          timedOut: true,
        },
      ).cause,
      "startup-timeout",
      "a finished capture is not the cause",
    );
  });
});
