import assert from "node:assert/strict";
import { describe, test } from "node:test";
import { finishReasonIn, usageIn } from "../../src/agent/stream-summary.ts";
import { sseEvent } from "../../src/engine/sse.ts";

const chunk = (finish: string | null, extra: Record<string, unknown> = {}) =>
  sseEvent(
    JSON.stringify({
      id: "c",
      object: "chat.completion.chunk",
      choices: [{ index: 0, delta: { content: "hi" }, finish_reason: finish }],
      usage: null,
      ...extra,
    }),
  );

describe("what stream_end reports from the engine's bytes", () => {
  test("finish reason: the last non-null one of a block; null ones are not reasons", () => {
    assert.equal(finishReasonIn(Buffer.concat([chunk(null), chunk(null)])), undefined);
    assert.equal(finishReasonIn(Buffer.concat([chunk(null), chunk("length"), sseEvent("[DONE]")])), "length");
    assert.equal(finishReasonIn(Buffer.concat([chunk("stop"), chunk("length")])), "length");
    assert.equal(
      finishReasonIn(Buffer.from('{"choices":[{"finish_reason":"stop"}]}')),
      "stop",
      "a JSON body",
    );
    assert.equal(finishReasonIn(Buffer.from(`"finish_reason":"${"x".repeat(65)}"`)), undefined, "too long");
  });

  test("usage: decoded from the one event that carries it, or from a JSON body", () => {
    const usage = sseEvent(
      JSON.stringify({
        id: "c",
        choices: [],
        usage: { prompt_tokens: 7, completion_tokens: 3, total_tokens: 10 },
      }),
    );
    assert.deepEqual(usageIn(Buffer.concat([chunk(null), chunk("stop"), usage, sseEvent("[DONE]")])), {
      promptTokens: 7,
      completionTokens: 3,
    });
    assert.equal(usageIn(Buffer.concat([chunk(null), chunk("stop")])), undefined, "usage: null is no usage");
    assert.deepEqual(usageIn(Buffer.from('{"usage":{"prompt_tokens":1,"completion_tokens":2}}')), {
      promptTokens: 1,
      completionTokens: 2,
    });
    assert.equal(usageIn(Buffer.from('data: {"usage":{"prompt_tokens":1,\n\n')), undefined, "not JSON");
  });
});
