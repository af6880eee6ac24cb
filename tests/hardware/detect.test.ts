import assert from "node:assert/strict";
import { after, describe, test } from "node:test";
import * as v from "valibot";
import { detectHardware, HardwareSchema } from "../../src/hardware/detect.ts";
import { sandbox } from "../planner/fixtures.ts";

const box = sandbox();
after(() => box.cleanup());

const proc = box.procWith(512, 480);

async function detect(tools: string[], env: Record<string, string> = {}, timeoutMs = 20_000) {
  const hw = await detectHardware({
    env: { PATH: box.binWith(tools), ...env },
    procRoot: proc,
    sysRoot: box.sysWith(),
    shmPath: box.root,
    timeoutMs,
  });
  // Whatever happened, the result is valid data.
  v.parse(HardwareSchema, hw);
  return hw;
}

const messages = (hw: { findings: { message: string }[] }) => hw.findings.map((f) => f.message);

describe("NVIDIA detection over captured nvidia-smi outputs", () => {
  test("8x H100 with NVLink between every pair", async () => {
    const hw = await detect(["nvidia-smi", "lscpu"], { XIM_FIXTURE_GPU: "h100x8-nvlink" });
    assert.equal(hw.accelerator, "nvidia");
    assert.equal(hw.gpus.length, 8);
    assert.deepEqual(
      hw.gpus.map((g) => g.index),
      [0, 1, 2, 3, 4, 5, 6, 7],
    );
    const g = hw.gpus[0];
    assert.equal(g.name, "NVIDIA H100 80GB HBM3");
    assert.equal(g.memoryTotalMiB, 81559);
    assert.equal(g.memoryFreeMiB, 81081);
    assert.equal(g.computeCapability, "9.0");
    assert.equal(g.driverVersion, "565.57.01");
    assert.equal(g.uuid, "GPU-00000000-0000-0000-0000-000000000000");
    assert.equal(hw.topology.kind, "nvlink");
    assert.equal(hw.topology.links[0][1], "NV18");
  });

  test("2x A40 on PCIe: no NVLink", async () => {
    const hw = await detect(["nvidia-smi", "lscpu"], { XIM_FIXTURE_GPU: "a40x2-pcie" });
    assert.equal(hw.gpus.length, 2);
    assert.equal(hw.gpus[1].name, "NVIDIA A40");
    assert.equal(hw.gpus[1].computeCapability, "8.6");
    assert.equal(hw.topology.kind, "pcie");
    assert.deepEqual(hw.topology.links, [
      ["X", "NODE"],
      ["NODE", "X"],
    ]);
  });

  test("4x L40 on PCIe across two NUMA nodes", async () => {
    const hw = await detect(["nvidia-smi", "lscpu"], { XIM_FIXTURE_GPU: "l40x4-pcie" });
    assert.equal(hw.gpus.length, 4);
    assert.equal(hw.topology.kind, "pcie");
    assert.equal(hw.topology.links[0][2], "SYS");
  });

  test("2x A30", async () => {
    const hw = await detect(["nvidia-smi", "lscpu"], { XIM_FIXTURE_GPU: "a30x2-pcie" });
    assert.deepEqual(
      hw.gpus.map((g) => [g.name, g.memoryTotalMiB, g.computeCapability]),
      [
        ["NVIDIA A30", 24576, "8.0"],
        ["NVIDIA A30", 24576, "8.0"],
      ],
    );
  });

  test("CUDA_VISIBLE_DEVICES picks and orders the GPUs the engine sees", async () => {
    const hw = await detect(["nvidia-smi"], {
      XIM_FIXTURE_GPU: "h100x8-nvlink",
      CUDA_VISIBLE_DEVICES: "6,2",
    });
    assert.deepEqual(
      hw.gpus.map((g) => g.index),
      [6, 2],
    );
    assert.equal(hw.topology.kind, "nvlink");
    const byUuid = await detect(["nvidia-smi"], {
      XIM_FIXTURE_GPU: "h100x8-nvlink",
      CUDA_VISIBLE_DEVICES: "GPU-00000003-0000-0000-0000-000000000003",
    });
    assert.deepEqual(
      byUuid.gpus.map((g) => g.index),
      [3],
    );
  });

  test("CUDA_VISIBLE_DEVICES that hides every GPU leaves the CPU, and says why", async () => {
    const hw = await detect(["nvidia-smi", "lscpu"], {
      XIM_FIXTURE_GPU: "h100x8-nvlink",
      CUDA_VISIBLE_DEVICES: "",
    });
    assert.equal(hw.accelerator, "cpu");
    assert.ok(messages(hw).some((m) => m.includes("hides every GPU")));
  });

  test("an H200 in MIG mode: the board's memory is reported, and the plan is warned", async () => {
    const hw = await detect(["nvidia-smi"], { XIM_FIXTURE_GPU: "h200-mig" });
    assert.equal(hw.gpus.length, 1);
    assert.equal(hw.gpus[0].migEnabled, true);
    assert.equal(hw.gpus[0].memoryTotalMiB, 143771);
    const warning = hw.findings.find((f) => f.message.includes("MIG mode"));
    assert.ok(warning);
    assert.equal(warning.severity, "warning");
    assert.match(warning.message, /whole board's/);
  });

  test("an H200 MIG slice selected by UUID: memory from the slice profile", async () => {
    const hw = await detect(["nvidia-smi"], {
      XIM_FIXTURE_GPU: "h200-mig",
      CUDA_VISIBLE_DEVICES: "MIG-00000002-0000-0000-0000-000000000002",
    });
    assert.equal(hw.gpus.length, 1);
    assert.deepEqual(hw.gpus[0].migSlice, {
      profile: "2g.35gb",
      uuid: "MIG-00000002-0000-0000-0000-000000000002",
      memoryMiB: 33378,
    });
    assert.equal(hw.gpus[0].memoryTotalMiB, 33378);
    assert.equal(hw.gpus[0].boardMemoryMiB, 143771);
  });
});

describe("a missing or failing nvidia-smi is a finding, never a crash", () => {
  const cases: Array<{
    name: string;
    scenario?: string;
    tools: string[];
    message: RegExp;
    severity: string;
  }> = [
    {
      name: "no nvidia-smi on PATH",
      tools: ["lscpu"],
      message: /^no NVIDIA driver \(nvidia-smi not found\)$/,
      severity: "info",
    },
    {
      name: "NVML Unknown Error (a container that lost its GPUs)",
      scenario: "nvml-unknown-error",
      tools: ["nvidia-smi", "lscpu"],
      message: /^NVML: Unknown Error \(the container lost its GPUs; see doctor\)$/,
      severity: "error",
    },
    {
      name: "driver not loaded",
      scenario: "no-driver",
      tools: ["nvidia-smi", "lscpu"],
      message: /no NVIDIA driver loaded/,
      severity: "error",
    },
    {
      name: "driver/library mismatch",
      scenario: "driver-library-mismatch",
      tools: ["nvidia-smi", "lscpu"],
      message:
        /driver\/library version mismatch.*NVML library version: 550\.144|Driver\/library version mismatch/,
      severity: "error",
    },
  ];
  for (const c of cases) {
    test(c.name, async () => {
      const hw = await detect(c.tools, c.scenario ? { XIM_FIXTURE_GPU: c.scenario } : {});
      assert.equal(hw.accelerator, "cpu");
      const f = hw.findings.find((x) => x.source === "nvidia-smi");
      assert.ok(f, `no nvidia-smi finding in ${JSON.stringify(hw.findings)}`);
      assert.match(f.message, c.message);
      assert.equal(f.severity, c.severity);
    });
  }

  test("a hung nvidia-smi is killed at the timeout", async () => {
    // The double sleeps 60 s; the probe gives up after 500 ms. Nothing here depends on how fast the machine is.
    const hw = await detect(["nvidia-smi", "lscpu"], { XIM_FIXTURE_GPU: "hang" }, 500);
    const f = hw.findings.find((x) => x.source === "nvidia-smi");
    assert.ok(f);
    assert.match(f.message, /did not answer within 500 ms/);
  });
});

describe("AMD detection", () => {
  test("8x MI300X from amd-smi static --json", async () => {
    const hw = await detect(["amd-smi", "lscpu"], { XIM_FIXTURE_GPU: "mi300x-x8" });
    assert.equal(hw.accelerator, "amd");
    assert.equal(hw.gpus.length, 8);
    assert.equal(hw.gpus[0].name, "MI300X-O");
    assert.equal(hw.gpus[0].memoryTotalMiB, 196592);
    assert.equal(hw.topology.kind, "xgmi");
  });

  test("HIP_VISIBLE_DEVICES limits the AMD GPUs", async () => {
    const hw = await detect(["amd-smi"], { XIM_FIXTURE_GPU: "mi300x-x8", HIP_VISIBLE_DEVICES: "0,1,2,3" });
    assert.equal(hw.gpus.length, 4);
  });

  test("rocm-smi JSON when amd-smi is absent", async () => {
    const hw = await detect(["rocm-smi"], { XIM_FIXTURE_GPU: "rx7900xt-rocm-smi" });
    assert.equal(hw.accelerator, "amd");
    assert.deepEqual(
      hw.gpus.map((g) => [g.name, g.memoryTotalMiB, g.memoryFreeMiB, g.computeCapability]),
      [["Radeon RX 7900 XT", 20464, 20437, "gfx1100"]],
    );
  });

  test("both AMD tools missing is an info finding", async () => {
    const hw = await detect(["lscpu"]);
    assert.ok(messages(hw).includes("no AMD ROCm tools (amd-smi and rocm-smi not found)"));
  });
});

describe("CPU and memory", () => {
  test("EPYC 9534, one socket, 4 NUMA nodes, AVX-512 with BF16 and VNNI", async () => {
    const hw = await detect(["lscpu"], { XIM_FIXTURE_CPU: "epyc-9534-1s-nps4-smt-off" });
    assert.deepEqual(hw.cpu, {
      model: "AMD EPYC 9534 64-Core Processor",
      architecture: "x86_64",
      logicalCpus: 64,
      sockets: 1,
      coresPerSocket: 64,
      threadsPerCore: 1,
      physicalCores: 64,
      numaNodes: 4,
      numa: [0, 1, 2, 3].map((id) => {
        const cpus = Array.from({ length: 16 }, (_, i) => id * 16 + i);
        // SMT off: every CPU is a core. No fake /sys here, so the node memory is unknown.
        return { id, cpus, coreCpus: cpus, memoryTotalBytes: null, memoryFreeBytes: null };
      }),
      avx512f: true,
      avx512bf16: true,
      avx512vnni: true,
      amxBf16: false,
    });
    assert.equal(hw.memory.totalBytes, 512 * 1024 ** 3);
    assert.equal(hw.memory.availableBytes, 480 * 1024 ** 3);
    assert.ok(hw.memory.shmBytes !== null && hw.memory.shmBytes > 0);
  });

  test("2x Xeon 8562Y+ with SMT and AMX", async () => {
    const hw = await detect(["lscpu"], { XIM_FIXTURE_CPU: "xeon-platinum-8562y-plus-x2" });
    assert.equal(hw.cpu?.sockets, 2);
    assert.equal(hw.cpu?.logicalCpus, 128);
    assert.equal(hw.cpu?.physicalCores, 64);
    assert.equal(hw.cpu?.numaNodes, 2);
    assert.equal(hw.cpu?.amxBf16, true);
  });

  test("POWER9 with CPU-less NUMA nodes counts only the nodes that have CPUs", async () => {
    const hw = await detect(["lscpu"], { XIM_FIXTURE_CPU: "power9-x2-sparse-numa" });
    assert.equal(hw.cpu?.numaNodes, 2);
    assert.equal(hw.cpu?.avx512f, false);
  });

  test("a missing /proc/meminfo is a finding", async () => {
    const hw = await detectHardware({
      env: { PATH: box.binWith(["lscpu"]) },
      procRoot: box.root + "/nope",
      shmPath: box.root,
    });
    assert.equal(hw.memory.totalBytes, null);
    assert.ok(hw.findings.some((f) => f.source === "/proc/meminfo"));
  });
});
