import assert from "node:assert/strict";
import { after, describe, test } from "node:test";
import { fabricOutcome } from "../../src/doctor/checks/gpu-fabric.ts";
import { memoryHealthOutcome } from "../../src/doctor/checks/gpu-memory-health.ts";
import { cleanup, devWith, doctor, pathWith, statuses } from "./helpers.ts";

after(cleanup);

const GPU_IDS = [
  "gpu-driver",
  "gpu-list",
  "gpu-cuda-compat",
  "gpu-device-nodes",
  "gpu-nvml",
  "gpu-mig",
  "gpu-persistence",
  "gpu-fabric",
  "gpu-memory-health",
  "gpu-container-toolkit",
  "gpu-docker-runtime",
];
const NV_NODES = ["nvidiactl", "nvidia-uvm", "nvidia0", "shm"];

function gpuEnv(scenario: string, tools: string[], extra: Record<string, string> = {}) {
  return {
    PATH: pathWith(tools),
    XIM_FIXTURE_GPU: scenario,
    XIM_FIXTURE_CPU: "epyc-9534-1s-nps4-smt-off",
    ...extra,
  };
}

describe("GPU checks against the nvidia-smi/amd-smi/nvidia-container-cli/docker test doubles", () => {
  test("a healthy H100 host with docker's nvidia runtime passes every GPU check", async () => {
    const r = await doctor(
      gpuEnv("../doctor/gpu/h100-healthy", ["nvidia-smi", "lscpu", "docker"], {
        XIM_FIXTURE_DOCKER: "info-nvidia-runtime",
      }),
      { selectors: ["gpu"], devRoot: devWith(NV_NODES), inContainer: false },
    );
    assert.deepEqual(statuses(r, GPU_IDS), {
      "gpu-driver": "ok",
      "gpu-list": "ok",
      "gpu-cuda-compat": "ok",
      "gpu-device-nodes": "ok",
      "gpu-nvml": "ok",
      "gpu-mig": "ok",
      "gpu-persistence": "ok",
      "gpu-fabric": "ok",
      "gpu-memory-health": "ok",
      "gpu-container-toolkit": "skipped",
      "gpu-docker-runtime": "ok",
    });
    assert.match(r["gpu-driver"].evidence, /driver 590\.48\.01, CUDA 13\.1, 1 GPU/);
    assert.match(r["gpu-list"].evidence, /NVIDIA H100 80GB HBM3 81559 MiB, 81081 free, cc 9\.0/);
    assert.match(r["gpu-docker-runtime"].evidence, /io\.containerd\.runc\.v2 nvidia runc/);
    assert.match(r["gpu-persistence"].evidence, /enabled/);
  });

  test("no GPU tool and no device node: the driver check warns with the fix, the others are skipped", async () => {
    const r = await doctor(gpuEnv("none", ["lscpu"]), {
      selectors: ["gpu"],
      devRoot: devWith(["shm"]),
      inContainer: true,
    });
    assert.equal(r["gpu-driver"].status, "warn");
    assert.match(r["gpu-driver"].evidence, /no GPU/);
    assert.match(r["gpu-driver"].fix ?? "", /--gpus all/);
    for (const id of GPU_IDS.slice(1)) assert.equal(r[id].status, "skipped", `${id}: ${r[id].evidence}`);
  });

  test("NVML Unknown Error in a container is explained as the container toolkit problem, with the fix", async () => {
    const r = await doctor(gpuEnv("nvml-unknown-error", ["nvidia-smi", "lscpu"]), {
      selectors: ["gpu"],
      devRoot: devWith(NV_NODES),
      inContainer: true,
    });
    assert.equal(r["gpu-driver"].status, "fail");
    assert.equal(r["gpu-nvml"].status, "fail");
    assert.match(r["gpu-nvml"].evidence, /Failed to initialize NVML: Unknown Error/);
    assert.match(r["gpu-nvml"].evidence, /daemon-reload/);
    assert.match(r["gpu-nvml"].fix ?? "", /nvidia-ctk system create-dev-char-symlinks/);
    assert.equal(r["gpu-list"].status, "skipped");
    assert.equal(r["gpu-mig"].status, "skipped");
  });

  test("MIG mode on an H100 is a warning that names a MIG device to pin", async () => {
    const r = await doctor(gpuEnv("../doctor/gpu/h100-mig", ["nvidia-smi", "lscpu"]), {
      selectors: ["gpu"],
      devRoot: devWith(NV_NODES),
      inContainer: false,
    });
    assert.equal(r["gpu-mig"].status, "warn");
    assert.match(
      r["gpu-mig"].evidence,
      /MIG enabled on NVIDIA H100 80GB HBM3 \(00000000:00:09\.0\) with 4 MIG devices/,
    );
    assert.match(r["gpu-mig"].fix ?? "", /CUDA_VISIBLE_DEVICES=MIG-00000000-0000-0000-0000-000000000000/);
    assert.equal(r["gpu-driver"].status, "ok");
    assert.equal(r["gpu-persistence"].status, "ok");
  });

  test("persistence mode off on an L40S is a warning with the nvidia-persistenced fix", async () => {
    const r = await doctor(gpuEnv("../doctor/gpu/l40s-persistence-off", ["nvidia-smi", "lscpu"]), {
      selectors: ["gpu-persistence", "gpu-mig", "gpu-cuda-compat", "gpu-fabric", "gpu-memory-health"],
      devRoot: devWith(NV_NODES),
      inContainer: false,
    });
    assert.equal(r["gpu-persistence"].status, "warn");
    assert.match(r["gpu-persistence"].evidence, /NVIDIA L40S/);
    assert.match(r["gpu-persistence"].fix ?? "", /nvidia-persistenced/);
    assert.equal(r["gpu-mig"].status, "ok");
    assert.match(r["gpu-cuda-compat"].evidence, /driver 595\.80 \(CUDA 13\.2\)/);
    assert.equal(r["gpu-fabric"].status, "skipped", "an L40S has no NVSwitch (Fabric State N/A)");
    assert.equal(r["gpu-memory-health"].status, "ok");
  });

  test("a driver older than 570 warns that vLLM's CUDA 12.8 build needs a newer one", async () => {
    const r = await doctor(gpuEnv("a40x2-pcie", ["nvidia-smi", "lscpu"]), {
      selectors: ["gpu-cuda-compat"],
      inContainer: false,
    });
    assert.equal(r["gpu-cuda-compat"].status, "warn");
    assert.match(r["gpu-cuda-compat"].evidence, /550\.127\.05/);
  });

  test("no driver loaded and a driver/library mismatch fail with their own fixes", async () => {
    const none = await doctor(gpuEnv("no-driver", ["nvidia-smi", "lscpu"]), {
      selectors: ["gpu-driver", "gpu-nvml"],
      devRoot: devWith(["shm"]),
      inContainer: false,
    });
    assert.equal(none["gpu-driver"].status, "fail");
    assert.match(none["gpu-driver"].fix ?? "", /modprobe nvidia/);
    assert.equal(none["gpu-nvml"].status, "skipped");
    const mismatch = await doctor(gpuEnv("driver-library-mismatch", ["nvidia-smi", "lscpu"]), {
      selectors: ["gpu-driver", "gpu-cuda-compat"],
      inContainer: false,
    });
    assert.equal(mismatch["gpu-driver"].status, "fail");
    assert.equal(mismatch["gpu-cuda-compat"].status, "fail");
    assert.match(mismatch["gpu-cuda-compat"].fix ?? "", /reboot/);
  });

  test("a hanging nvidia-smi fails the driver check instead of hanging doctor", {
    timeout: 30_000,
  }, async () => {
    const r = await doctor(gpuEnv("hang", ["nvidia-smi", "lscpu"]), {
      selectors: ["gpu-driver"],
      inContainer: false,
    });
    assert.equal(r["gpu-driver"].status, "fail");
    assert.match(r["gpu-driver"].evidence, /hung/);
  });

  test("missing device nodes fail, with the host fix or the container fix", async () => {
    const host = await doctor(gpuEnv("../doctor/gpu/h100-healthy", ["nvidia-smi", "lscpu"]), {
      selectors: ["gpu-device-nodes"],
      devRoot: devWith(["nvidiactl", "shm"]),
      inContainer: false,
    });
    assert.equal(host["gpu-device-nodes"].status, "fail");
    assert.match(host["gpu-device-nodes"].evidence, /nvidia-uvm/);
    assert.match(host["gpu-device-nodes"].fix ?? "", /nvidia-modprobe/);
    const container = await doctor(gpuEnv("../doctor/gpu/h100-healthy", ["nvidia-smi", "lscpu"]), {
      selectors: ["gpu-device-nodes"],
      devRoot: devWith(["shm"]),
      inContainer: true,
    });
    assert.equal(container["gpu-device-nodes"].status, "fail");
    assert.match(container["gpu-device-nodes"].fix ?? "", /--gpus all/);
  });

  test("an AMD MI300X box answers through amd-smi", async () => {
    const r = await doctor(gpuEnv("mi300x-x8", ["amd-smi", "lscpu"]), {
      selectors: ["gpu-driver", "gpu-list", "gpu-device-nodes"],
      devRoot: devWith(["kfd", "dri/renderD128", "shm"]),
      inContainer: false,
    });
    assert.deepEqual(statuses(r, ["gpu-driver", "gpu-list", "gpu-device-nodes"]), {
      "gpu-driver": "ok",
      "gpu-list": "ok",
      "gpu-device-nodes": "ok",
    });
    assert.match(r["gpu-driver"].evidence, /8x MI300X-O \(196592 MiB\)/);
  });
});

describe("the NVIDIA container toolkit inside a container", () => {
  const select = { selectors: ["gpu-container-toolkit"], inContainer: true };

  test("nvidia-container-cli info reaching the driver is ok, with its versions and devices", async () => {
    const r = await doctor(
      { PATH: pathWith(["nvidia-container-cli"]), XIM_FIXTURE_NVIDIA_CONTAINER_CLI: "info-t4x4-fake-driver" },
      select,
    );
    assert.equal(r["gpu-container-toolkit"].status, "ok");
    assert.match(
      r["gpu-container-toolkit"].evidence,
      /NVRM 575\.57\.08, CUDA 12\.2, 4 device\(s\) \(NVIDIA Tesla T4\)/,
    );
  });

  test("nvidia-container-cli that cannot reach the driver fails with the toolkit fix", async () => {
    const r = await doctor(
      {
        PATH: pathWith(["nvidia-container-cli"]),
        XIM_FIXTURE_NVIDIA_CONTAINER_CLI: "error-driver-not-loaded",
      },
      select,
    );
    assert.equal(r["gpu-container-toolkit"].status, "fail");
    assert.match(r["gpu-container-toolkit"].evidence, /nvml error: driver not loaded/);
    assert.match(r["gpu-container-toolkit"].fix ?? "", /nvidia-ctk runtime configure --runtime=docker/);
  });

  test("NVIDIA_VISIBLE_DEVICES without the hook's device nodes means the container was not started with the NVIDIA runtime", async () => {
    const r = await doctor(
      { PATH: pathWith([]), NVIDIA_VISIBLE_DEVICES: "all" },
      { ...select, devRoot: devWith(["shm"]), procRoot: devWith([]) },
    );
    assert.equal(r["gpu-container-toolkit"].status, "fail");
    assert.match(r["gpu-container-toolkit"].fix ?? "", /--gpus all/);
  });

  test("a container given no GPU at all skips the check", async () => {
    const r = await doctor({ PATH: pathWith([]) }, { ...select, devRoot: devWith(["shm"]) });
    assert.equal(r["gpu-container-toolkit"].status, "skipped");
  });
});

describe("docker's runtimes on a host", () => {
  test("an NVIDIA host whose docker lacks the nvidia runtime gets the nvidia-ctk fix", async () => {
    const r = await doctor(
      gpuEnv("../doctor/gpu/h100-healthy", ["nvidia-smi", "docker"], {
        XIM_FIXTURE_DOCKER: "info-no-nvidia-runtime-grep-partial",
      }),
      { selectors: ["gpu-docker-runtime"], inContainer: false },
    );
    assert.equal(r["gpu-docker-runtime"].status, "warn");
    assert.match(r["gpu-docker-runtime"].evidence, /io\.containerd\.runc\.v2 runc \(default runc\)/);
    assert.match(r["gpu-docker-runtime"].fix ?? "", /nvidia-ctk runtime configure --runtime=docker/);
  });

  test("a host without docker skips the check", async () => {
    const r = await doctor(gpuEnv("none", []), { selectors: ["gpu-docker-runtime"], inContainer: false });
    assert.equal(r["gpu-docker-runtime"].status, "skipped");
    assert.match(r["gpu-docker-runtime"].evidence, /docker is not installed/);
  });
});

describe("fabric and memory health from nvidia-smi -q values", () => {
  const base = { busId: "00000000:18:00.0", name: "NVIDIA H100 80GB HBM3" };

  test("a fabric still training fails with the Fabric Manager fix (CUDA error 802)", () => {
    const r = fabricOutcome([{ ...base, fabricState: "In Progress", fabricStatus: "N/A" }]);
    assert.equal(r.status, "fail");
    assert.match(r.evidence, /error 802/);
    assert.match(r.fix ?? "", /nvidia-fabricmanager/);
    assert.equal(
      fabricOutcome([{ ...base, fabricState: "Completed", fabricStatus: "Success" }]).status,
      "ok",
    );
    assert.equal(fabricOutcome([{ ...base, fabricState: "N/A" }]).status, "skipped");
  });

  test("a pending row remap or uncorrectable ECC errors warn; a failed remap fails", () => {
    const pending = memoryHealthOutcome([
      { ...base, remapPending: "Yes", remapFailure: "No", dramUncorrectable: "0" },
    ]);
    assert.equal(pending.status, "warn");
    assert.match(pending.fix ?? "", /nvidia-smi -i <bus id> -r/);
    assert.equal(
      memoryHealthOutcome([{ ...base, remapPending: "No", dramUncorrectable: "3" }]).status,
      "warn",
    );
    assert.equal(memoryHealthOutcome([{ ...base, remapPending: "No", remapFailure: "Yes" }]).status, "fail");
    assert.equal(
      memoryHealthOutcome([{ ...base, remapPending: "No", remapFailure: "No", dramUncorrectable: "0" }])
        .status,
      "ok",
    );
  });
});
