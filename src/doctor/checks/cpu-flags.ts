/**
 * @module cpu-flags: the x86 instructions vLLM's CPU backend is built for.
 * The Xerotier documentation's CPU images are compiled with AVX-512, AVX512_BF16 and
 * AVX512_VNNI (AMD EPYC Genoa or newer); a CPU without them needs an image
 * built for it. Informational on a node that serves from a GPU.
 */
import { type Check, ok, skipped, warn } from "../check.ts";
import { detectedHardware } from "../gpu-probe.ts";

export const cpuFlags: Check = {
  id: "cpu-flags",
  group: "cpu",
  title: "AVX-512, AVX512_BF16, AVX512_VNNI",
  async run(ctx) {
    const hw = await detectedHardware(ctx);
    const cpu = hw.cpu;
    if (!cpu) return skipped("neither lscpu nor /proc/cpuinfo describes the CPU");
    if (!/x86_64|amd64|i[3-6]86/i.test(cpu.architecture)) {
      return skipped(`${cpu.architecture} CPU: AVX-512 does not apply`);
    }
    const missing = [
      cpu.avx512f ? "" : "avx512f",
      cpu.avx512bf16 ? "" : "avx512_bf16",
      cpu.avx512vnni ? "" : "avx512_vnni",
    ].filter(Boolean);
    const model = cpu.model || "unknown CPU";
    if (missing.length === 0) return ok(`${model}: AVX-512 with BF16 and VNNI`);
    const evidence = `${model} lacks ${missing.join(", ")}`;
    if (hw.accelerator !== "cpu")
      return ok(`${evidence} (serving from the GPU, so this only matters for CPU inference)`);
    const args = cpu.avx512f
      ? `${cpu.avx512bf16 ? "" : "--build-arg VLLM_CPU_AVX512BF16=0 "}${cpu.avx512vnni ? "" : "--build-arg VLLM_CPU_AVX512VNNI=0"}`.trim()
      : "--build-arg VLLM_CPU_DISABLE_AVX512=1 --build-arg VLLM_CPU_AVX512BF16=0 --build-arg VLLM_CPU_AVX512VNNI=0";
    return warn(
      `${evidence}: the Xerotier vLLM CPU images are built for them, and CPU inference is slower without`,
      `Serve on an AVX-512 CPU with BF16/VNNI (AMD EPYC 9004 Genoa or newer), or build the vLLM CPU image for this one: \`docker build -f docker/Dockerfile.cpu ${args} ...\`.`,
    );
  },
};
