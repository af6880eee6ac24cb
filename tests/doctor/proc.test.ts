import assert from "node:assert/strict";
import { mkdirSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { after, describe, test } from "node:test";
import { parseNvidiaQ } from "../../src/doctor/gpu-probe.ts";
import { isEngineCommand, isLoopback, readTcpListeners } from "../../src/doctor/proc.ts";
import { cleanup, tempDir } from "./helpers.ts";

after(cleanup);

describe("reading /proc", () => {
  test("LISTEN rows of /proc/net/tcp and tcp6 decode to addresses, ports and inodes", async () => {
    const root = tempDir();
    mkdirSync(join(root, "net"));
    // Row layout of the kernel's tcp4_seq_show/tcp6_seq_show; addresses in host byte order (little-endian here).
    writeFileSync(
      join(root, "net", "tcp"),
      [
        "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode",
        "   0: 00000000:07E8 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 126 1 00000000459c7014 100 0 0 10 0",
        "   1: 0100007F:AFC9 0100007F:91BC 06 00000000:00000000 03:000000B3 00000000     0        0 0 3 00000000a91f4378",
        "   2: 0100007F:1F90 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 777 1 0000000000000000 100 0 0 10 0",
        "",
      ].join("\n"),
    );
    writeFileSync(
      join(root, "net", "tcp6"),
      [
        "  sl  local_address                         remote_address                        st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode",
        "   0: 00000000000000000000000001000000:1F91 00000000000000000000000000000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 888 1 0000000000000000 100 0 0 10 0",
        "   1: 00000000000000000000000000000000:15B3 00000000000000000000000000000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 999 1 0000000000000000 100 0 0 10 0",
        "",
      ].join("\n"),
    );
    const l = await readTcpListeners(root);
    assert.deepEqual(
      l.map((x) => `${x.address} ${x.port} ${x.inode}`),
      ["0.0.0.0 2024 126", "127.0.0.1 8080 777", "::1 8081 888", ":: 5555 999"],
    );
    assert.deepEqual(
      l.map((x) => isLoopback(x.address)),
      [false, true, true, false],
    );
  });

  test("vLLM is recognised by its launcher, its module or its renamed workers", () => {
    assert.ok(isEngineCommand(["/usr/bin/python3", "/usr/local/bin/vllm", "serve", "m"], "vllm"));
    assert.ok(isEngineCommand(["/usr/local/bin/xerotier-vllm", "serve"], "/usr/local/bin/xerotier-vllm"));
    assert.ok(isEngineCommand(["python", "-m", "vllm.entrypoints.openai.api_server"], "vllm"));
    assert.ok(isEngineCommand(["VLLM::EngineCore"], "vllm"));
    assert.ok(!isEngineCommand(["node", "main.ts", "doctor"], "vllm"));
    assert.ok(!isEngineCommand(["bash", "-c", "grep vllm log"], "vllm"));
  });

  test("nvidia-smi -q sections become paths per GPU", () => {
    const q = parseNvidiaQ(
      "\n==============NVSMI LOG==============\n\nDriver Version                            : 590.48.01\nCUDA Version                              : 13.1\n\nGPU 00000000:00:09.0\n    Product Name                          : NVIDIA H100 80GB HBM3\n    Persistence Mode                      : Enabled\n    MIG Mode\n        Current                           : Disabled\n        Pending                           : Disabled\n    FB Memory Usage\n        Total                             : 81559 MiB\n",
    );
    assert.equal(q.top["CUDA Version"], "13.1");
    assert.equal(q.gpus[0].busId, "00000000:00:09.0");
    assert.equal(q.gpus[0].values["MIG Mode/Current"], "Disabled");
    assert.equal(q.gpus[0].values["FB Memory Usage/Total"], "81559 MiB");
  });
});
