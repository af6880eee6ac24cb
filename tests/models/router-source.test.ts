import assert from "node:assert/strict";
import { mkdirSync, mkdtempSync, readFileSync, rmSync, utimesSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, describe, test } from "node:test";
import { ModelLibrary } from "../../src/models/library.ts";
import { type PullConfig, pullModel } from "../../src/models/pull.ts";
import type { PullError } from "../../src/models/source.ts";
import { RouterSource } from "../../src/models/sources/router.ts";
import type { ModelChunkRequestSchema } from "../../src/protocol/model-transfer.ts";
import { bytesOf } from "./helpers/file-server.ts";
import { modelChannel, modelRouter, type Tamper } from "./helpers/zmq-channel.ts";

type ChunkRequest = import("valibot").InferOutput<typeof ModelChunkRequestSchema>;

const root = mkdtempSync(join(tmpdir(), "xim-router-src-"));
after(() => rmSync(root, { recursive: true, force: true }));
let n = 0;

const CHUNK = 64 * 1024;

function fixture() {
  n += 1;
  const dir = join(root, `m${n}`);
  mkdirSync(join(dir, "sub"), { recursive: true });
  const weights = bytesOf(10 * CHUNK + 123, n);
  writeFileSync(join(dir, "config.json"), '{"architectures":["LlamaForCausalLM"]}');
  writeFileSync(join(dir, "sub", "model.safetensors"), weights);
  writeFileSync(join(dir, ".hidden"), "not published");
  const config: PullConfig = {
    modelCacheDir: join(root, `cache${n}`),
    modelCacheMaxSizeGb: 100,
    modelPullMaxAttempts: 3,
    modelPullBaseDelayMs: 1,
    modelPullMaxDelayMs: 1,
  };
  return { dir, weights, config, library: new ModelLibrary(join(root, `state${n}`)) };
}

async function withRouter<T>(
  library: ModelLibrary,
  tamper: Tamper | undefined,
  fn: (
    r: Awaited<ReturnType<typeof modelRouter>>,
    channel: Awaited<ReturnType<typeof modelChannel>>["channel"],
  ) => Promise<T>,
) {
  const router = await modelRouter(library, tamper);
  const node = await modelChannel(router.endpoint);
  try {
    return await fn(router, node.channel);
  } finally {
    await node.close();
    await router.close();
  }
}

describe("pulling a model the router publishes, over a real ZeroMQ connection", () => {
  test("the published folder arrives whole and verified", { timeout: 30_000 }, async () => {
    const f = fixture();
    const published = await f.library.add("team/llama", f.dir);
    assert.deepEqual(
      published.manifest.files.map((x) => x.path),
      ["config.json", "sub/model.safetensors"],
      "dot files are not published",
    );
    await withRouter(f.library, undefined, async (_r, channel) => {
      const result = await pullModel({
        source: new RouterSource("team/llama", channel, { chunkBytes: CHUNK }),
        config: f.config,
      });
      assert.equal(result.path, join(f.config.modelCacheDir, "team--llama"));
      assert.deepEqual(readFileSync(join(result.path, "sub", "model.safetensors")), Buffer.from(f.weights));
    });
    assert.deepEqual(
      (await f.library.list()).map((m) => [m.name, m.files]),
      [["team/llama", 2]],
    );
  });

  test("a broken transfer resumes from the offset on disk, not from zero", { timeout: 30_000 }, async () => {
    const f = fixture();
    await f.library.add("resumable", f.dir);
    let failed = false;
    const tamper: Tamper = (req, reply) => {
      if (
        req.type === "model_chunk_request" &&
        req.path === "sub/model.safetensors" &&
        req.offset === 6 * CHUNK &&
        !failed
      ) {
        failed = true;
        return {
          type: "model_error",
          requestId: req.requestId,
          code: "unavailable",
          message: "disk busy",
          retryAfterMs: 0,
        };
      }
      return reply;
    };
    await withRouter(f.library, tamper, async (router, channel) => {
      const result = await pullModel({
        source: new RouterSource("resumable", channel, { chunkBytes: CHUNK, window: 2 }),
        config: f.config,
      });
      assert.deepEqual(readFileSync(join(result.path, "sub", "model.safetensors")), Buffer.from(f.weights));
      const offsets = router.requests
        .filter(
          (r): r is ChunkRequest => r.type === "model_chunk_request" && r.path === "sub/model.safetensors",
        )
        .map((r) => r.offset);
      const retryFrom = offsets.lastIndexOf(6 * CHUNK);
      assert.ok(retryFrom > offsets.indexOf(6 * CHUNK), "the failed chunk was asked for again");
      assert.ok(!offsets.slice(retryFrom).includes(0), "nothing before the failure was fetched again");
    });
  });

  test("a chunk damaged in transit is caught by its digest and fetched again", {
    timeout: 30_000,
  }, async () => {
    const f = fixture();
    await f.library.add("damaged", f.dir);
    let damaged = false;
    const tamper: Tamper = (_req, reply) => {
      if (reply.type === "model_chunk" && reply.offset === 2 * CHUNK && !damaged) {
        damaged = true;
        const data = Buffer.from(reply.data);
        data[10] ^= 0xff;
        return { ...reply, data };
      }
      return reply;
    };
    await withRouter(f.library, tamper, async (_r, channel) => {
      const result = await pullModel({
        source: new RouterSource("damaged", channel, { chunkBytes: CHUNK }),
        config: f.config,
      });
      assert.ok(damaged);
      assert.deepEqual(readFileSync(join(result.path, "sub", "model.safetensors")), Buffer.from(f.weights));
    });
  });

  test("an unknown model fails at once; a file changed after publishing is refused", {
    timeout: 30_000,
  }, async () => {
    const f = fixture();
    await f.library.add("changes", f.dir);
    await withRouter(f.library, undefined, async (_r, channel) => {
      await assert.rejects(
        pullModel({ source: new RouterSource("nope", channel), config: f.config }),
        (err: PullError) =>
          err.code === "XIM_PULL_REFUSED" && /publishes no model named nope/.test(err.message),
      );
      utimesSync(join(f.dir, "config.json"), new Date(), new Date(Date.now() + 5000));
      await assert.rejects(
        pullModel({ source: new RouterSource("changes", channel, { chunkBytes: CHUNK }), config: f.config }),
        (err: PullError) =>
          err.code === "XIM_PULL_REFUSED" && /changed on the router since it was published/.test(err.message),
      );
    });
  });

  test("a request the router cannot parse gets a bad_request reply, not a crash", async () => {
    const f = fixture();
    const reply = await f.library.handle({
      type: "model_chunk_request",
      requestId: "r1",
      name: "x",
      path: "a",
      offset: -1,
      length: 1,
    });
    assert.equal(reply.type, "model_error");
    assert.equal(reply.type === "model_error" && reply.code, "bad_request");
  });
});
