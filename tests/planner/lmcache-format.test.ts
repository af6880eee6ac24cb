import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import { mkdirSync, readFileSync, statSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { after, describe, test } from "node:test";
import { formatPlan, planToJson, shellQuote } from "../../src/cli/plan-format.ts";
import { KV_TRANSFER_CONFIG, probeLmcache, SALT_WARNING, writePlanFiles } from "../../src/planner/lmcache.ts";
import { sandbox } from "./fixtures.ts";
import { planFor } from "./plan-helpers.ts";

const box = sandbox();
after(() => box.cleanup());

const LM = { XEROTIER_AGENT_LMCACHE_ENABLED: "true" };

describe("LMCache in the plan", () => {
  test("CPU node, local only: 10 % of RAM as CPU cache, the connector, the config file, less CPU KV cache", async () => {
    const configDir = join(box.root, "cfg-cpu");
    const plan = await planFor(
      box,
      { gpu: null, ramGiB: 128, cpu: "epyc-2vcpu-1s-vm" },
      "llama-3-8b-instruct",
      {
        ...LM,
        XEROTIER_AGENT_CONFIG_DIR: configDir,
      },
    );
    const path = join(configDir, "lmcache_config.yaml");
    assert.deepEqual(plan.args, [
      "--dtype",
      "bfloat16",
      "--max-model-len",
      "8192",
      "--kv-transfer-config",
      KV_TRANSFER_CONFIG,
    ]);
    assert.equal(plan.env.LMCACHE_CONFIG_FILE, path);
    // 93 GiB without LMCache, less its 13.7 GB of pinned CPU memory.
    assert.equal(plan.env.VLLM_CPU_KVCACHE_SPACE, "81");
    assert.deepEqual(
      plan.files.map((f) => [f.path, f.content]),
      [[path, "chunk_size: 256\nlocal_cpu: true\nmax_local_cpu_size: 13.7\n"]],
    );
    assert.ok(plan.warnings.includes(SALT_WARNING));
  });

  test("GPU node with a disk tier and a shared Redis: the password never reaches the printed plan", async () => {
    const configDir = join(box.root, "cfg-gpu");
    const plan = await planFor(box, { gpu: "a40x2-pcie", ramGiB: 256 }, "llama-3-8b-instruct", {
      ...LM,
      XEROTIER_AGENT_CONFIG_DIR: configDir,
      XEROTIER_AGENT_LMCACHE_DISK_SIZE_GB: "50",
      XEROTIER_AGENT_LMCACHE_DIR: "/data/lmcache",
      XEROTIER_AGENT_LMCACHE_REDIS_URL: "redis://:hunter2@valkey:6379",
    });
    assert.deepEqual(plan.args.slice(-2), [
      "--kv-transfer-config",
      '{"kv_connector":"LMCacheConnectorV1","kv_role":"kv_both"}',
    ]);
    const file = plan.files[0];
    const shown =
      "chunk_size: 256\nlocal_cpu: true\nmax_local_cpu_size: 13.7\nlocal_disk: file:///data/lmcache/\nmax_local_disk_size: 50\nremote_url: redis://***@valkey:6379\nremote_serde: naive\n";
    assert.equal(file.content, shown);
    assert.equal(file.secretContent?.reveal(), shown.replace("redis://***@", "redis://:hunter2@"));
    const printed = formatPlan(plan) + JSON.stringify(planToJson(plan)) + JSON.stringify(plan);
    assert.ok(!printed.includes("hunter2"));

    const written = await writePlanFiles(plan);
    assert.deepEqual(written.args, plan.args);
    assert.equal(readFileSync(file.path, "utf8"), file.secretContent?.reveal());
    assert.equal(statSync(file.path).mode & 0o777, 0o600);
    assert.equal(statSync(configDir).mode & 0o777, 0o700);
  });

  test("the disk tier defaults to $XDG_CACHE_HOME/lmcache", async () => {
    const plan = await planFor(box, { gpu: null }, "llama-3-8b-instruct", {
      ...LM,
      XEROTIER_AGENT_LMCACHE_DISK_SIZE_GB: "100",
    });
    assert.match(
      plan.files[0].content,
      new RegExp(`local_disk: file://${join(box.root, "cache", "lmcache")}/\n`),
    );
  });

  test("XEROTIER_AGENT_KV_CACHE_BACKEND=lmcache turns it on too", async () => {
    const plan = await planFor(box, { gpu: null }, "llama-3-8b-instruct", {
      XEROTIER_AGENT_KV_CACHE_BACKEND: "lmcache",
    });
    assert.ok(plan.args.includes("--kv-transfer-config"));
  });

  test("LMCache not installed: the plan runs without it and warns", async () => {
    const plan = await planFor(box, { gpu: "h100x8-nvlink" }, "llama-3-8b-instruct", LM, {
      lmcacheAvailable: false,
    });
    assert.ok(!plan.args.includes("--kv-transfer-config"));
    assert.equal(plan.env.LMCACHE_CONFIG_FILE, undefined);
    assert.deepEqual(plan.files, []);
    assert.ok(plan.warnings.some((w) => w.includes("not installed")));
  });

  test("a config folder that cannot be written: LMCache is dropped with a warning, the engine still starts", async () => {
    const blocker = join(box.root, "a-file");
    writeFileSync(blocker, "");
    const plan = await planFor(box, { gpu: "h100x8-nvlink" }, "llama-3-8b-instruct", {
      ...LM,
      XEROTIER_AGENT_CONFIG_DIR: join(blocker, "cfg"),
    });
    const degraded = await writePlanFiles(plan);
    assert.ok(!degraded.args.includes("--kv-transfer-config"));
    assert.equal(degraded.env.LMCACHE_CONFIG_FILE, undefined);
    assert.deepEqual(degraded.files, []);
    assert.ok(degraded.warnings.some((w) => w.startsWith("LMCache disabled: cannot write")));
    assert.ok(!degraded.warnings.includes(SALT_WARNING));
    assert.ok(degraded.decisions.some((d) => d.setting === "LMCache" && d.value === "off"));
  });
});

describe("probing for the lmcache package with vLLM's own Python", () => {
  const python = execFileSync("python3", ["-c", "import sys; print(sys.executable)"], {
    encoding: "utf8",
  }).trim();
  const bin = join(box.root, "probe-bin");
  mkdirSync(bin);
  writeFileSync(join(bin, "vllm"), `#!${python}\nprint("a launcher")\n`, { mode: 0o755 });
  const site = join(box.root, "site");
  mkdirSync(join(site, "lmcache"), { recursive: true });
  writeFileSync(join(site, "lmcache", "__init__.py"), "");

  test("absent", async () => {
    assert.equal(await probeLmcache({ vllmPath: "vllm", env: { PATH: bin } }), false);
  });

  test("present", async () => {
    assert.equal(await probeLmcache({ vllmPath: "vllm", env: { PATH: bin, PYTHONPATH: site } }), true);
  });

  test("no Python at all is unknown, not absent", async () => {
    writeFileSync(join(bin, "vllm-broken"), "#!/nonexistent/python3\n", { mode: 0o755 });
    assert.equal(await probeLmcache({ vllmPath: "vllm-broken", env: { PATH: bin } }), null);
  });
});

describe("printing a plan", () => {
  test("the command line, the environment, each decision with its reason, and the warnings", async () => {
    const plan = await planFor(box, { gpu: "a40x2-pcie" }, "llama-3-70b-instruct", {
      XEROTIER_AGENT_SPECULATIVE_ENABLED: "1",
    });
    const text = formatPlan(plan, { vllmPath: "vllm", model: "/models/llama-3-70b" });
    assert.ok(
      text.includes(
        `  vllm serve /models/llama-3-70b --tensor-parallel-size 2 --quantization bitsandbytes --max-model-len 8192 --gpu-memory-utilization 0.9 --disable-custom-all-reduce --speculative-config '{"method":"ngram","num_speculative_tokens":5,"prompt_lookup_max":4,"prompt_lookup_min":2}'\n`,
      ),
      text,
    );
    assert.match(text, /SETTING\s+VALUE\s+SOURCE\s+REASON/);
    assert.match(text, /--disable-custom-all-reduce\s+on\s+auto\s+NVIDIA A40 with TP 2/);
    assert.match(text, /Memory per GPU: budget 40\.5 GiB/);
  });

  test("shell quoting", () => {
    assert.equal(shellQuote("--max-model-len"), "--max-model-len");
    assert.equal(shellQuote(`{"a":"it's"}`), `'{"a":"it'\\''s"}'`);
  });
});
