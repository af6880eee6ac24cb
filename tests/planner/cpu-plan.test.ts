/**
 * The CPU plan against what vLLM's CPU worker does with it
 * (research/vllm-contract-2026-12.md H1, M1): one rank per NUMA node, each
 * rank's bind list one CPU per physical core of its node, lists joined with
 * `|`, the KV cache sized per rank from one node's memory. Hardware comes
 * from real lscpu captures (tests/fixtures/gpu/lscpu/) and sysfs trees
 * (tests/fixtures/cpu/README.md).
 */
import assert from "node:assert/strict";
import { join } from "node:path";
import { after, describe, test } from "node:test";
import { detectHardware } from "../../src/hardware/detect.ts";
import { inspectModel } from "../../src/planner/inspect-model.ts";
import { planEngine } from "../../src/planner/plan.ts";
import { CPU_FIXTURES, MODELS, type SysNode, sandbox } from "./fixtures.ts";
import { configFor, planFor, type Scenario } from "./plan-helpers.ts";

const box = sandbox();
after(() => box.cleanup());

const evens = Array.from({ length: 64 }, (_, i) => 2 * i);
const odds = evens.map((c) => c + 1);
/** The Xeon capture's nodes: even CPUs on node 0, odd on node 1; CPU n's hyperthread sibling is n+64. */
const XEON_NUMA: SysNode[] = [
  { id: 0, cpus: evens.join(","), memGiB: 256 },
  { id: 1, cpus: odds.join(","), memGiB: 256 },
];
const xeonSiblings = (c: number) => [c % 64, (c % 64) + 64];
const EPYC_NPS4: SysNode[] = [0, 1, 2, 3].map((id) => ({
  id,
  cpus: `${id * 16}-${id * 16 + 15}`,
  memGiB: 128,
}));
const list = (cpus: number[]) => cpus.join(",");

interface Case {
  name: string;
  hw: Scenario;
  model?: string;
  settings?: Record<string, string>;
  tp: number;
  env: Record<string, string>;
  /** Words each decision's reason must contain, by setting. */
  reasons?: Record<string, RegExp>;
  warning?: RegExp;
}

const cases: Case[] = [
  {
    name: "1 socket, 1 NUMA node (the Xerotier documentation's case): every core but one, KV from total RAM",
    hw: { gpu: null, ramGiB: 96, cpu: "epyc-2vcpu-1s-vm", numa: [{ id: 0, cpus: "0-1", memGiB: 96 }] },
    tp: 1,
    env: { VLLM_CPU_KVCACHE_SPACE: "66", VLLM_CPU_OMP_THREADS_BIND: "0" },
    reasons: { VLLM_CPU_KVCACHE_SPACE: /^NUMA node 0's 96\.0 GiB - model 15\.0 GiB - overhead 14\.4 GiB/ },
  },
  {
    name: "EPYC 9534 NPS4 (1 socket, 4 NUMA nodes, SMT off): 4 ranks, one per node, KV from one node's memory",
    hw: { gpu: null, ramGiB: 512, numa: EPYC_NPS4 },
    tp: 4,
    env: { VLLM_CPU_KVCACHE_SPACE: "105", VLLM_CPU_OMP_THREADS_BIND: "0-14|16-30|32-46|48-62" },
    reasons: {
      "--tensor-parallel-size": /4 NUMA nodes: one rank per node/,
      VLLM_CPU_KVCACHE_SPACE: /^per rank: NUMA node 0's 128\.0 GiB .* - model 15\.0 GiB \/ 4 ranks/,
    },
  },
  {
    name: "EPYC NPS4 without per-node memory in /sys: RAM split evenly, and the reason says so",
    hw: { gpu: null, ramGiB: 128 },
    tp: 4,
    env: { VLLM_CPU_KVCACHE_SPACE: "20", VLLM_CPU_OMP_THREADS_BIND: "0-14|16-30|32-46|48-62" },
    reasons: {
      VLLM_CPU_KVCACHE_SPACE:
        /RAM 128\.0 GiB \/ 4 \(4 NUMA nodes; per-node memory unreadable, assumed even\)/,
    },
  },
  {
    name: "2x Xeon with SMT2: one CPU per physical core of each node (31 threads a rank, not 127), lists joined with |",
    hw: {
      gpu: null,
      ramGiB: 512,
      cpu: "xeon-platinum-8562y-plus-x2",
      numa: XEON_NUMA,
      siblings: xeonSiblings,
    },
    tp: 2,
    env: {
      VLLM_CPU_KVCACHE_SPACE: "210",
      VLLM_CPU_OMP_THREADS_BIND: `${list(evens.slice(0, 31))}|${list(odds.slice(0, 31))}`,
    },
    reasons: { VLLM_CPU_OMP_THREADS_BIND: /31\/31 threads, hyperthread siblings left idle/ },
  },
  {
    name: "2x Xeon with SMT2 but no sibling map in /sys: vLLM's auto binding with the reserved CPU",
    hw: { gpu: null, ramGiB: 512, cpu: "xeon-platinum-8562y-plus-x2", numa: XEON_NUMA },
    tp: 2,
    env: {
      VLLM_CPU_KVCACHE_SPACE: "210",
      VLLM_CPU_OMP_THREADS_BIND: "auto",
      VLLM_CPU_NUM_OF_RESERVED_CPU: "1",
    },
    reasons: { VLLM_CPU_OMP_THREADS_BIND: /hyperthread siblings is unknown/ },
  },
  {
    name: "POWER9, NUMA nodes 0 and 8 with CPUs and four without: 2 ranks, auto binding",
    hw: { gpu: null, ramGiB: 256, cpu: "power9-x2-sparse-numa" },
    tp: 2,
    env: {
      VLLM_CPU_KVCACHE_SPACE: "101",
      VLLM_CPU_OMP_THREADS_BIND: "auto",
      VLLM_CPU_NUM_OF_RESERVED_CPU: "1",
    },
  },
  {
    name: "explicit tensor parallel 2 on one NUMA node: auto binding, the node's memory halved per rank",
    hw: { gpu: null, ramGiB: 256, cpu: "epyc-2vcpu-1s-vm" },
    settings: { XEROTIER_AGENT_AUTO_CONFIGURE_GPU: "0", XEROTIER_AGENT_TENSOR_PARALLEL_SIZE: "2" },
    tp: 2,
    env: {
      VLLM_CPU_KVCACHE_SPACE: "101",
      VLLM_CPU_OMP_THREADS_BIND: "auto",
      VLLM_CPU_NUM_OF_RESERVED_CPU: "1",
    },
    reasons: { VLLM_CPU_OMP_THREADS_BIND: /^2 ranks on 1 NUMA node/ },
  },
  {
    name: "a single bind list given through XEROTIER_AGENT_VLLM_ENV with 4 ranks is flagged (vLLM's rank 1 would fail with IndexError)",
    hw: { gpu: null, ramGiB: 128 },
    settings: { XEROTIER_AGENT_VLLM_ENV: "VLLM_CPU_OMP_THREADS_BIND=0-62" },
    tp: 4,
    env: { VLLM_CPU_KVCACHE_SPACE: "20", VLLM_CPU_OMP_THREADS_BIND: "0-62" },
    warning: /has 1 list for 4 tensor-parallel ranks: .* rank 1 fails with IndexError/,
  },
];

describe("the CPU plan follows vLLM's per-rank NUMA binding", () => {
  for (const c of cases) {
    test(c.name, async () => {
      const plan = await planFor(box, c.hw, c.model ?? "llama-3-8b-instruct", c.settings);
      assert.equal(plan.tensorParallelSize, c.tp);
      const tpArg = plan.args.indexOf("--tensor-parallel-size");
      assert.equal(tpArg === -1 ? 1 : Number(plan.args[tpArg + 1]), c.tp);
      for (const [k, v] of Object.entries(c.env)) assert.equal(plan.env[k], v, k);
      assert.equal(
        plan.env.OMP_NUM_THREADS,
        undefined,
        "vLLM overwrites OMP_NUM_THREADS; the plan must not promise one",
      );
      if (c.env.VLLM_CPU_OMP_THREADS_BIND !== "auto")
        assert.equal(plan.env.VLLM_CPU_NUM_OF_RESERVED_CPU, undefined);
      const bind = plan.env.VLLM_CPU_OMP_THREADS_BIND;
      if (bind !== "auto" && !c.settings?.XEROTIER_AGENT_VLLM_ENV) assert.equal(bind.split("|").length, c.tp);
      for (const [setting, re] of Object.entries(c.reasons ?? {})) {
        const d = plan.decisions.find((x) => x.setting === setting);
        assert.ok(d, `no decision for ${setting}`);
        assert.match(d.reason, re);
      }
      if (c.warning)
        assert.ok(
          plan.warnings.some((w) => c.warning?.test(w)),
          plan.warnings.join("\n"),
        );
    });
  }
});

describe("the CPU probe without lscpu (env -i: no PATH)", () => {
  const vm = join(CPU_FIXTURES, "epyc-2vcpu-vm");

  test("reads /proc/cpuinfo and /sys: the real CPU model, x86_64, the node's cores and memory", async () => {
    const hw = await detectHardware({
      env: {},
      procRoot: join(vm, "proc"),
      sysRoot: join(vm, "sys"),
      shmPath: box.root,
      skipGpu: true,
    });
    assert.equal(hw.cpu?.model, "AMD EPYC");
    assert.equal(hw.cpu?.architecture, "x86_64");
    assert.equal(hw.cpu?.avx512bf16, true);
    assert.deepEqual(hw.cpu?.numa, [
      {
        id: 0,
        cpus: [0, 1],
        coreCpus: [0, 1],
        memoryTotalBytes: 24683748 * 1024,
        memoryFreeBytes: 22542448 * 1024,
      },
    ]);
  });

  test("the plan from that probe binds the first core and sizes the KV cache from node 0's memory", async () => {
    const hardware = await detectHardware({
      env: {},
      procRoot: join(vm, "proc"),
      sysRoot: join(vm, "sys"),
      shmPath: box.root,
      skipGpu: true,
    });
    const { loaded, env } = configFor(box, {});
    const plan = planEngine({
      hardware,
      model: await inspectModel(join(MODELS, "qwen3-8b-fp8")),
      config: loaded.config,
      env,
    });
    assert.equal(plan.env.VLLM_CPU_OMP_THREADS_BIND, "0");
    assert.match(
      plan.decisions.find((d) => d.setting === "VLLM_CPU_KVCACHE_SPACE")?.reason ?? "",
      /^NUMA node 0's 23\.5 GiB - model/,
    );
  });

  test("sysfs with hyperthread siblings gives one CPU per core, and nodes without CPUs are left out", async () => {
    const sysRoot = box.sysWith([...XEON_NUMA, { id: 2, cpus: "", memGiB: 16 }], xeonSiblings);
    const hw = await detectHardware({
      env: {},
      procRoot: box.procWith(512, 500),
      sysRoot,
      shmPath: box.root,
      skipGpu: true,
    });
    // /proc/meminfo of procWith has no cpuinfo: the CPU is unknown, so only sysfs would name nodes.
    assert.equal(hw.cpu, null);
    const withLscpu = await detectHardware({
      env: { PATH: box.binWith(["lscpu"]), XIM_FIXTURE_CPU: "xeon-platinum-8562y-plus-x2" },
      procRoot: box.procWith(512, 500),
      sysRoot,
      shmPath: box.root,
      skipGpu: true,
    });
    assert.deepEqual(
      withLscpu.cpu?.numa.map((n) => [n.id, n.cpus.length, n.coreCpus, n.memoryTotalBytes]),
      [
        [0, 64, evens.slice(0, 32), 256 * 1024 ** 3],
        [1, 64, odds.slice(0, 32), 256 * 1024 ** 3],
      ],
    );
  });
});
