/**
 * @module Real vLLM start-up error messages, embedded so `xim engine-sim
 * --fail-at-start` can print them from the single executable (which has no
 * fixture files). Each text is byte-for-byte a file in tests/fixtures/vllm/
 * (a test checks it); that folder's README names the source of each.
 */

export const VLLM_MESSAGES = {
  cudagraphCaptureInfoV0:
    "(VllmWorkerProcess pid=486) INFO 04-12 08:22:04 [model_runner.py:1456] Capturing cudagraphs for decoding. This may lead to unexpected consequences if the model is not static. To run the model in eager mode, set 'enforce_eager=True' or use '--enforce-eager' in the CLI. If out-of-memory error occurs during cudagraph capture, consider decreasing `gpu_memory_utilization` or switching to eager mode. You can also reduce the `max_num_seqs` as needed to decrease memory usage.\n",
  cudagraphCaptureOomV1:
    "(VllmWorker rank=3 pid=1090) ERROR 06-05 06:18:13 [multiproc_executor.py:470] RuntimeError: CUDA error: out of memory\n(VllmWorker rank=3 pid=1090) ERROR 06-05 06:18:13 [multiproc_executor.py:470] CUDA kernel errors might be asynchronously reported at some other API call, so the stacktrace below might be incorrect.\n(VllmWorker rank=3 pid=1090) ERROR 06-05 06:18:13 [multiproc_executor.py:470] For debugging consider passing CUDA_LAUNCH_BLOCKING=1\n",
  torchOomEngineCore:
    "ERROR 03-13 09:00:43 [core.py:330] torch.OutOfMemoryError: CUDA out of memory. Tried to allocate 1.16 GiB. GPU 0 has a total capacity of 7.75 GiB of which 1.17 GiB is free. Including non-PyTorch memory, this process has 5.02 GiB memory in use. Of the allocated memory 4.81 GiB is allocated by PyTorch, and 18.97 MiB is reserved by PyTorch but unallocated. If reserved but unallocated memory is large try setting PYTORCH_CUDA_ALLOC_CONF=expandable_segments:True to avoid fragmentation.  See documentation for Memory Management  (https://pytorch.org/docs/stable/notes/cuda.html#environment-variables)\nERROR 03-13 09:00:43 [core.py:330] \nCRITICAL 03-13 09:00:43 [core_client.py:260] Got fatal signal from worker processes, shutting down. See stack trace above for root cause issue.\n",
  torchOomWorker:
    "(VllmWorker rank=1 pid=194255) ERROR 05-08 14:46:12 [multiproc_executor.py:435] torch.OutOfMemoryError: CUDA out of memory. Tried to allocate 270.00 MiB. GPU 1 has a total capacity of 21.98 GiB of which 156.94 MiB is free. Including non-PyTorch memory, this process has 21.80 GiB memory in use. Of the allocated memory 21.42 GiB is allocated by PyTorch, and 24.12 MiB is reserved by PyTorch but unallocated. If reserved but unallocated memory is large try setting PYTORCH_CUDA_ALLOC_CONF=expandable_segments:True to avoid fragmentation.  See documentation for Memory Management  (https://pytorch.org/docs/stable/notes/cuda.html#environment-variables)\n",
  maxModelLenV1:
    "ValueError: To serve at least one request with the model's max seq len (1048576), (44.25 GiB KV cache is needed, which is larger than the available KV cache memory (8.42 GiB). Based on the available memory, the estimated maximum model length is 199552. Try increasing gpu_memory_utilization (which also controls CPU memory on the CPU backend) or decreasing max_model_len when initializing the engine. See https://docs.vllm.ai/en/latest/configuration/conserving_memory/ for more details.\n",
  maxModelLenV0:
    "ValueError: The model's max seq len (32768) is larger than the maximum number of tokens that can be stored in KV cache (7344). Try increasing `gpu_memory_utilization` or decreasing `max_model_len` when initializing the engine.\n",
  quantizationMismatch:
    "ValueError: Quantization method specified in the model config (bitsandbytes) does not match the quantization method specified in the `quantization` argument (marlin).\n",
  modelNotFoundV1:
    "ValueError: Invalid repository ID or local directory specified: 'neuralmagic/Meta-Llama-3-8B-Instruct-FP8-dynamic'.\nPlease verify the following requirements:\n1. Provide a valid Hugging Face repository ID.\n2. Specify a local directory that contains a recognized configuration file.\n   - For Hugging Face models: ensure the presence of a 'config.json'.\n   - For Mistral models: ensure the presence of a 'params.json'.\n",
  modelNotFoundHfValidation:
    "huggingface_hub.errors.HFValidationError: Repo id must be in the form 'repo_name' or 'namespace/repo_name': '/root/DeepSeek-V2-Lite'. Use `repo_type` argument if needed.\n",
  portInUseV0: '    temp_socket.bind(("", args.port))\nOSError: [Errno 98] Address already in use\n',
  noCacheBlocks:
    "ValueError: No available memory for the cache blocks. Try increasing `gpu_memory_utilization` when initializing the engine.\n",
  quantizationCapability:
    "ValueError: The quantization method awq is not supported for the current GPU. Minimum capability: 75. Current capability: 70.\n",
  quantizationUnknown:
    "ValueError: Unknown quantization method: hqq. Must be one of ['awq', 'fp8', 'fbgemm_fp8', 'fp_quant', 'modelopt', 'modelopt_fp4', 'modelopt_mxfp8', 'modelopt_mixed', 'gguf', 'auto_gptq', 'gptq', 'gptq_marlin', 'awq_marlin', 'humming', 'compressed-tensors', 'bitsandbytes', 'experts_int8', 'quark', 'moe_wna16', 'torchao', 'inc', 'mxfp4', 'gpt_oss_mxfp4', 'deepseek_v4_fp8', 'cpu_awq', 'online', 'fp8_per_tensor', 'fp8_per_block', 'int8_per_channel_weight_only', 'mxfp8'].\n",
  maxModelLenUserSpecified:
    "ValueError: User-specified max_model_len (131072) is greater than the derived max_model_len (None=8192 in model's config.json). This may lead to incorrect model outputs or CUDA errors. Make sure the value is correct and within the model context size.\n",
  engineReadyTimeout:
    "(APIServer pid=279547) TimeoutError: Timed out waiting for engine core processes to start. This is often caused by slow weight loading for large models. Waited 600s (configured by VLLM_ENGINE_READY_TIMEOUT_S). To increase the timeout, set the environment variable: VLLM_ENGINE_READY_TIMEOUT_S=SECONDS-PLACEHOLDER\n",
  eagle3UnsupportedModel:
    "NFO  PyProcess W-162-chat-film-stdout:   Value error, Eagle3 is only supported for ['llama', 'qwen', 'minicpm', 'gpt_oss'] models. Got self.target_model_config.hf_text_config.model_type='gemma3_text' [type=value_error, input_value=ArgsKwargs((), {'method':..., _api_process_rank=0)}), input_type=ArgsKwargs]\n",
  suffixArcticInferenceMissing:
    "ImportError: Arctic Inference is required for suffix decoding. Install via `pip install arctic-inference==0.1.1`.\n",
  lmcacheModuleMissing: "ModuleNotFoundError: No module named 'lmcache'\n",
  lmcacheRedisRefused:
    "redis.exceptions.ConnectionError: Error 111 connecting to 127.0.0.1:6379. Connection refused.\n",
} as const;

/** Fixture file of each message, for the test that keeps them equal. */
export const VLLM_MESSAGE_FILES: Record<keyof typeof VLLM_MESSAGES, string> = {
  cudagraphCaptureInfoV0: "cudagraph-capture-info-v0.log",
  cudagraphCaptureOomV1: "cudagraph-capture-oom-v1.log",
  torchOomEngineCore: "torch-oom-v1-enginecore.log",
  torchOomWorker: "torch-oom-v1-worker.log",
  maxModelLenV1: "max-model-len-v1-estimated-recent.log",
  maxModelLenV0: "max-model-len-v0.log",
  quantizationMismatch: "quantization-mismatch.log",
  modelNotFoundV1: "model-not-found-v1.log",
  modelNotFoundHfValidation: "model-not-found-hf-validation.log",
  portInUseV0: "port-in-use-v0.log",
  noCacheBlocks: "no-cache-blocks.log",
  quantizationCapability: "quantization-capability.log",
  quantizationUnknown: "quantization-unknown.log",
  maxModelLenUserSpecified: "max-model-len-user-specified.log",
  engineReadyTimeout: "engine-ready-timeout.log",
  eagle3UnsupportedModel: "eagle3-unsupported-model.log",
  suffixArcticInferenceMissing: "suffix-arctic-inference-missing.log",
  lmcacheModuleMissing: "lmcache-module-missing.log",
  lmcacheRedisRefused: "lmcache-redis-refused.log",
};

/** What `--fail-at-start <kind>` prints (to stderr) before exiting 1: the messages of one real failure. */
export const START_FAILURES = {
  oom: ["torchOomEngineCore"],
  "cuda-graph": ["cudagraphCaptureInfoV0", "cudagraphCaptureOomV1"],
  "model-not-found": ["modelNotFoundV1"],
  "port-in-use": ["portInUseV0"],
  "max-model-len": ["maxModelLenV1"],
  "quantization-mismatch": ["quantizationMismatch"],
  "no-kv-cache-memory": ["noCacheBlocks"],
  "quantization-unsupported-gpu": ["quantizationCapability"],
  "quantization-unknown": ["quantizationUnknown"],
  "max-model-len-above-model": ["maxModelLenUserSpecified"],
  "engine-ready-timeout": ["engineReadyTimeout"],
  "speculative-unsupported-model": ["eagle3UnsupportedModel"],
  "speculative-package-missing": ["suffixArcticInferenceMissing"],
  "lmcache-failed": ["lmcacheModuleMissing"],
} as const satisfies Record<string, ReadonlyArray<keyof typeof VLLM_MESSAGES>>;

export type StartFailureKind = keyof typeof START_FAILURES;
export const START_FAILURE_KINDS = Object.keys(START_FAILURES) as StartFailureKind[];
