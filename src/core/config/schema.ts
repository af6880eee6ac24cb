/**
 * @module The configuration of xim: every XEROTIER_AGENT_* setting in one
 * valibot schema. Each entry names its variable, flag, group, documentation
 * and default; the loader, `xim config`, the CLI's flags and the README's
 * table are all generated from this object, so they cannot drift.
 * The `Config` type is inferred from it.
 */
import * as v from "valibot";
import { defaultConfigDir, defaultModelCacheDir } from "../paths.ts";
import {
  argList,
  autoChoice,
  autoInt,
  bool,
  choice,
  computedPath,
  envAssignments,
  fraction,
  int,
  optionalString,
  port,
  secret,
  secretWithDefault,
  stringWithDefault,
} from "./kit.ts";

/** vLLM's `--quantization` values (v0.11 and latest, research/vllm.md §1.3) plus the Xerotier documentation's bitsandbytes-fp4. */
export const QUANTIZATION_METHODS = [
  "awq",
  "awq_marlin",
  "gptq",
  "gptq_marlin",
  "gptq_marlin_24",
  "fp8",
  "fbgemm_fp8",
  "ptpc_fp8",
  "compressed-tensors",
  "bitsandbytes",
  "bitsandbytes-fp4",
  "gguf",
  "modelopt",
  "modelopt_fp4",
  "moe_wna16",
  "mxfp4",
  "quark",
  "torchao",
  "inc",
  "experts_int8",
  "hqq",
  "fp8_per_tensor",
  "fp8_per_block",
  "int8_per_channel_weight_only",
  "mxfp8",
] as const;

/** Speculative methods accepted by vLLM (research/vllm.md §1.5); the *_mtp names are aliases of mtp. */
export const SPECULATIVE_METHODS = [
  "deepseek_mtp",
  "mtp",
  "qwen3_next_mtp",
  "mimo_mtp",
  "ernie_mtp",
  "ngram",
  "eagle",
  "eagle3",
  "medusa",
  "draft_model",
  "suffix",
] as const;

/** Methods that need an external draft model (XEROTIER_AGENT_SPECULATIVE_DRAFT_MODEL_PATH). */
export const DRAFT_MODEL_METHODS: readonly string[] = ["eagle", "eagle3", "medusa", "draft_model"];

export const LOG_LEVELS = [
  "trace",
  "debug",
  "info",
  "notice",
  "warning",
  "warn",
  "error",
  "critical",
] as const;

/** The built-in salt secret. Using it is allowed (single tenant) but warned about at start-up. */
export const DEFAULT_SALT_SECRET = "xim-default-salt-secret-change-me";

const P = "XEROTIER_AGENT_";

export const settings = {
  // Enrollment
  joinKey: secret({
    env: `${P}JOIN_KEY`,
    group: "Enrollment",
    doc: "One-time join key (xjk_...) minted by the router. Needed only for the first start; `xim run` enrolls with it when no enrollment state exists.",
  }),
  routerUrl: optionalString({
    env: `${P}ROUTER_URL`,
    flag: "router",
    group: "Enrollment",
    doc: "Enrollment address of the router (https://host:port). Overrides the address carried inside the join key.",
  }),
  allowInsecure: bool(
    {
      env: `${P}ALLOW_INSECURE`,
      flag: "insecure",
      group: "Enrollment",
      doc: "Development only: allow enrollment over plain HTTP, and a router that runs ZeroMQ without CURVE (xim router serve --insecure-zmq). Join key, identity and requests then travel in clear, with no protection against an active attacker on the path.",
    },
    false,
  ),
  configDir: computedPath({
    env: `${P}CONFIG_DIR`,
    group: "Enrollment",
    doc: "Folder of the enrollment state (node identity, CURVE key pair, router endpoints); 0700, files 0600.",
    defaultText: "$XDG_CONFIG_HOME/xerotier",
    computeDefault: defaultConfigDir,
  }),
  envFile: optionalString({
    env: `${P}ENV_FILE`,
    group: "Enrollment",
    doc: "A .env file to read settings from, instead of ./.env. Values from the environment and flags win over it.",
    defaultText: "./.env",
  }),

  // Engine
  engine: choice(
    {
      env: `${P}ENGINE`,
      group: "Engine",
      doc: "Which engine `xim run` supervises: vllm, or sim (the simulated OpenAI-compatible engine for tests, demos and benchmarks).",
    },
    ["vllm", "sim"],
    "vllm",
  ),
  vllmPath: stringWithDefault(
    {
      env: `${P}VLLM_PATH`,
      group: "Engine",
      doc: "The vLLM launcher to execute (`vllm` on PATH, or a wrapper such as /usr/local/bin/xerotier-vllm).",
    },
    "vllm",
  ),
  vllmArgs: argList({
    env: `${P}VLLM_ARGS`,
    flag: "vllm-arg",
    group: "Engine",
    doc: "Extra arguments for `vllm serve`, space-separated (quotes group words). The flag is repeatable: --vllm-arg=--enforce-eager.",
  }),
  vllmEnv: envAssignments({
    env: `${P}VLLM_ENV`,
    group: "Engine",
    doc: "Extra environment for vLLM as space-separated KEY=VALUE pairs; empty values are skipped. Overrides the automatic CPU tuning. Repeatable flag.",
  }),
  vllmSocketPath: optionalString({
    env: `${P}VLLM_SOCKET_PATH`,
    group: "Engine",
    doc: "Serve the engine's API on this Unix socket instead of a loopback TCP port.",
  }),
  initialModelPath: optionalString({
    env: `${P}INITIAL_MODEL_PATH`,
    group: "Engine",
    doc: "A local model folder (config.json and weights) to start serving right after registration.",
  }),
  servedModelName: optionalString({
    env: `${P}SERVED_MODEL_NAME`,
    group: "Engine",
    doc: "The model name clients ask for (vLLM --served-model-name). Default: the initial model folder's name, or xim-sim with the simulated engine.",
    defaultText: "auto",
  }),
  maxConcurrent: autoInt(
    {
      env: `${P}MAX_CONCURRENT`,
      group: "Engine",
      doc: "Ceiling on in-flight requests this node accepts; 0 or unset derives it from the engine's capacity (5 on CPU).",
    },
    { min: 0, max: 100000 },
    { zeroIsAuto: true },
  ),
  maxNumSeqs: autoInt(
    { env: `${P}MAX_NUM_SEQS`, group: "Engine", doc: "vLLM --max-num-seqs; unset leaves vLLM's default." },
    { min: 1, max: 100000 },
  ),
  gpuMemoryUtilization: fraction(
    {
      env: `${P}GPU_MEMORY_UTILIZATION`,
      group: "Engine",
      doc: "Fraction of each GPU's memory vLLM may use (--gpu-memory-utilization). Lower it (0.85) on out-of-memory errors.",
    },
    0.9,
  ),
  maxModelLen: autoInt(
    {
      env: `${P}MAX_MODEL_LEN`,
      group: "Engine",
      doc: "Context length (--max-model-len); unset lets the planner pick the largest that fits beside the weights.",
    },
    { min: 1, max: 16_777_216 },
  ),
  tensorParallelSize: autoInt(
    {
      env: `${P}TENSOR_PARALLEL_SIZE`,
      group: "Engine",
      doc: "Tensor parallel size; used as given when XEROTIER_AGENT_AUTO_CONFIGURE_GPU=0, otherwise derived from the visible GPUs.",
    },
    { min: 1, max: 1024 },
  ),
  kvCacheBackend: choice(
    {
      env: `${P}KV_CACHE_BACKEND`,
      group: "Engine",
      doc: "KV cache offload backend: native (vLLM's own), lmcache, or none. XEROTIER_AGENT_LMCACHE_ENABLED=1 implies lmcache.",
    },
    ["native", "lmcache", "none"],
    "native",
  ),
  engineStartupTimeoutSeconds: int(
    {
      env: `${P}ENGINE_STARTUP_TIMEOUT_SECONDS`,
      group: "Engine",
      doc: "How long the engine may take to load before it counts as failed. Big models take many minutes; no liveness kill while loading.",
    },
    { min: 1, max: 86400, unit: "seconds" },
    1800,
  ),
  drainGraceSeconds: int(
    {
      env: `${P}DRAIN_GRACE_SECONDS`,
      group: "Engine",
      doc: "On SIGTERM, how long in-flight streams may run before they are cancelled and the node exits.",
    },
    { min: 0, max: 86400, unit: "seconds" },
    30,
  ),

  // Auto-configuration
  autoConfig: bool(
    {
      env: `${P}AUTO_CONFIG`,
      group: "Auto-configuration",
      doc: "Master toggle of auto-configuration. 0/false: use only explicit settings (no MoE tuning or automatic tuned-config folder either); `xim plan` shows every flag and variable still passed.",
    },
    true,
  ),
  autoConfigureGpu: bool(
    {
      env: `${P}AUTO_CONFIGURE_GPU`,
      group: "Auto-configuration",
      doc: "Derive tensor parallelism from the detected GPU count (on a CPU node: one rank per NUMA node). 0/false: use XEROTIER_AGENT_TENSOR_PARALLEL_SIZE.",
    },
    true,
  ),
  autoCudaMitigation: bool(
    {
      env: `${P}AUTO_CUDA_MITIGATION`,
      group: "Auto-configuration",
      doc: "Apply CUDA graph mitigations for known GPU issues (A30, A40, L40 with TP>1).",
    },
    true,
  ),

  // Quantization
  vllmQuantization: autoChoice(
    {
      env: `${P}VLLM_QUANTIZATION`,
      flag: "quantization",
      group: "Quantization",
      doc: "Force a quantization method (overrides the automatic choice). Pre-quantized checkpoints are detected without it.",
      defaultText: "-",
    },
    QUANTIZATION_METHODS,
  ),

  // Speculative decoding
  speculativeEnabled: bool(
    {
      env: `${P}SPECULATIVE_ENABLED`,
      group: "Speculative decoding",
      doc: "Enable speculative decoding (opt-in).",
    },
    false,
  ),
  speculativeMethod: autoChoice(
    {
      env: `${P}SPECULATIVE_METHOD`,
      group: "Speculative decoding",
      doc: "Force a method (deepseek_mtp, ngram, eagle, ...); auto-detected from the model when unset.",
    },
    SPECULATIVE_METHODS,
  ),
  speculativeTokens: autoInt(
    {
      env: `${P}SPECULATIVE_TOKENS`,
      group: "Speculative decoding",
      doc: "Speculative tokens per step; unset uses the method's default.",
      defaultText: "method default",
    },
    { min: 1, max: 64 },
  ),
  speculativeNgramFallback: bool(
    {
      env: `${P}SPECULATIVE_NGRAM_FALLBACK`,
      group: "Speculative decoding",
      doc: "Fall back to n-gram speculation when the primary method is unavailable: MTP without MTP layers, eagle/medusa without a draft model or with a draft model path that does not exist (the plan says why), or a method vLLM refuses at start (the engine restarts once with n-gram, logged and reported to the router).",
    },
    false,
  ),
  speculativeDraftModelPath: optionalString({
    env: `${P}SPECULATIVE_DRAFT_MODEL_PATH`,
    group: "Speculative decoding",
    doc: "Path of an external draft model. Required for eagle and medusa.",
  }),

  // CUDA graphs
  vllmDisableCudaGraphs: bool(
    {
      env: `${P}VLLM_DISABLE_CUDA_GRAPHS`,
      group: "CUDA graphs",
      doc: "Force eager execution (--enforce-eager) on CUDA graph capture failures.",
    },
    false,
  ),
  vllmDisableCustomAllReduce: bool(
    {
      env: `${P}VLLM_DISABLE_CUSTOM_ALL_REDUCE`,
      group: "CUDA graphs",
      doc: "Force --disable-custom-all-reduce for multi-GPU P2P issues on A30/A40 GPUs.",
    },
    false,
  ),

  // MoE kernel tuning
  moeConfigEnabled: bool(
    {
      env: `${P}MOE_CONFIG_ENABLED`,
      group: "MoE kernel tuning",
      doc: "Generate and apply tuned fused-MoE kernel configs for Mixture-of-Experts models. `xim run` tunes in the background only on GPUs of the same model its engine does not use; when it uses them all, it logs why and leaves tuning to `xim tune-moe` while the node is stopped.",
    },
    true,
  ),
  moeConfigPath: optionalString({
    env: `${P}MOE_CONFIG_PATH`,
    group: "MoE kernel tuning",
    doc: "Folder of tuned MoE configs (given to vLLM as VLLM_TUNED_CONFIG_FOLDER).",
    defaultText: "auto (beside the model cache)",
  }),

  // Flow control
  streamingSocketEnabled: bool(
    {
      env: `${P}STREAMING_SOCKET_ENABLED`,
      group: "Flow control",
      doc: "Send inference chunks on a dedicated streaming DEALER socket, so streams never delay the control channel.",
    },
    true,
  ),
  flowControlEnabled: bool(
    {
      env: `${P}FLOW_CONTROL_ENABLED`,
      group: "Flow control",
      doc: "Credit-based flow control for streaming. 0/false disables backpressure.",
    },
    true,
  ),
  flowControlWindowBytes: int(
    {
      env: `${P}FLOW_CONTROL_WINDOW_BYTES`,
      group: "Flow control",
      doc: "Credit window per stream: bytes the node may send before the router replenishes.",
    },
    { min: 1024, max: 1 << 30, unit: "bytes" },
    65536,
  ),
  flowControlReplenishThreshold: fraction(
    {
      env: `${P}FLOW_CONTROL_REPLENISH_THRESHOLD`,
      group: "Flow control",
      doc: "Fraction of a stream's credit consumed that triggers a credit replenishment from the router. The credit is the window, capped at the stream's share of the pause threshold (pause threshold / max concurrent requests): replenish after ceil(min(window, share) x this) bytes (docs/protocol.md).",
    },
    0.5,
  ),
  flowControlPauseThresholdBytes: int(
    {
      env: `${P}FLOW_CONTROL_PAUSE_THRESHOLD_BYTES`,
      group: "Flow control",
      doc: "Unacknowledged bytes across all streams at which the node pauses sending (global safety valve).",
    },
    { min: 1024, max: 1 << 30, unit: "bytes" },
    262144,
  ),
  flowControlTimeoutSeconds: int(
    {
      env: `${P}FLOW_CONTROL_TIMEOUT_SECONDS`,
      group: "Flow control",
      doc: "Seconds without credit after which a stream is stalled: cancelled at the engine and reported.",
    },
    { min: 1, max: 86400, unit: "seconds" },
    30,
  ),

  // Lease
  leaseRenewalIntervalMs: int(
    {
      env: `${P}LEASE_RENEWAL_INTERVAL_MS`,
      group: "Lease",
      doc: "How often the node renews its lease with the router.",
    },
    { min: 100, max: 3_600_000, unit: "ms" },
    10000,
  ),
  leaseDurationMs: int(
    {
      env: `${P}LEASE_DURATION_MS`,
      group: "Lease",
      doc: "Requested lease duration; must be at least 2x the renewal interval.",
    },
    { min: 200, max: 86_400_000, unit: "ms" },
    30000,
  ),

  // Model cache and pull
  modelCacheDir: computedPath({
    env: `${P}MODEL_CACHE_DIR`,
    group: "Model cache and pull",
    doc: "Folder of the local model cache.",
    defaultText: "$XDG_CACHE_HOME/xerotier/models",
    computeDefault: defaultModelCacheDir,
  }),
  modelCacheMaxSizeGb: int(
    {
      env: `${P}MODEL_CACHE_MAX_SIZE_GB`,
      group: "Model cache and pull",
      doc: "Size limit of the model cache; least recently used models are evicted beyond it.",
    },
    { min: 0, minExclusive: true, unit: "GB" },
    100,
  ),
  modelPullMaxAttempts: int(
    {
      env: `${P}MODEL_PULL_MAX_ATTEMPTS`,
      group: "Model cache and pull",
      doc: "Retries of a failed model pull (after the first try) before giving up; the delays follow the base and max below.",
    },
    { min: 1, max: 1000 },
    5,
  ),
  modelPullBaseDelayMs: int(
    {
      env: `${P}MODEL_PULL_BASE_DELAY_MS`,
      group: "Model cache and pull",
      doc: "First retry delay; each retry doubles it (1 s, 2 s, 4 s, 8 s, 15 s with the defaults).",
    },
    { min: 1, max: 3_600_000, unit: "ms" },
    1000,
  ),
  modelPullMaxDelayMs: int(
    {
      env: `${P}MODEL_PULL_MAX_DELAY_MS`,
      group: "Model cache and pull",
      doc: "Cap on the retry delay.",
    },
    { min: 1, max: 3_600_000, unit: "ms" },
    15000,
  ),

  // LMCache
  lmcacheEnabled: bool(
    {
      env: `${P}LMCACHE_ENABLED`,
      group: "LMCache",
      doc: "Enable LMCache KV cache sharing; on failure the node logs a warning and runs without it.",
    },
    false,
  ),
  lmcacheRedisUrl: secret({
    env: `${P}LMCACHE_REDIS_URL`,
    group: "LMCache",
    doc: "Redis/Valkey URL for a KV cache shared across nodes (redis://host:6379). Unset: local CPU and disk only.",
  }),
  lmcacheDiskSizeGb: autoInt(
    {
      env: `${P}LMCACHE_DISK_SIZE_GB`,
      group: "LMCache",
      doc: "Local disk cache size of LMCache in GB. Unset: half the free space of XEROTIER_AGENT_LMCACHE_DIR's file system, at most 100 GB (none with under 2 GB free); 0 turns the disk tier off.",
      defaultText: "auto",
    },
    { min: 0, max: 1_000_000 },
  ),
  lmcacheDir: optionalString({
    env: `${P}LMCACHE_DIR`,
    group: "LMCache",
    doc: "Folder of LMCache's disk tier.",
    defaultText: "$XDG_CACHE_HOME/lmcache",
  }),

  // Tenant isolation
  vllmSaltSecret: secretWithDefault(
    {
      env: `${P}VLLM_SALT_SECRET`,
      group: "Tenant isolation",
      doc: "Secret for per-tenant prefix-cache salts (HMAC-SHA256 of the project and tenant). Production deployments must set a unique one.",
      defaultText: "built-in default",
    },
    DEFAULT_SALT_SECRET,
  ),

  // Logging and metrics
  logLevel: choice(
    {
      env: `${P}LOG_LEVEL`,
      group: "Logging and metrics",
      doc: "Log level: trace, debug, info, warning, error (also notice, warn, critical).",
    },
    LOG_LEVELS,
    "info",
  ),
  metricsPort: port(
    {
      env: `${P}METRICS_PORT`,
      group: "Logging and metrics",
      doc: "Port of the Prometheus metrics, /healthz and /readyz server.",
    },
    9094,
  ),
  metricsHost: stringWithDefault(
    {
      env: `${P}METRICS_HOST`,
      group: "Logging and metrics",
      doc: "Address the metrics server binds; loopback unless set.",
    },
    "127.0.0.1",
  ),
  disableMetricsServer: bool(
    {
      env: `${P}DISABLE_METRICS_SERVER`,
      group: "Logging and metrics",
      doc: "Do not start the metrics server.",
    },
    false,
  ),

  // HTTP servers: the router's API and enrollment ports, the metrics/health port of router and node
  httpHeadersTimeoutMs: int(
    {
      env: `${P}HTTP_HEADERS_TIMEOUT_MS`,
      group: "HTTP servers",
      doc: "A client must send its request headers (and finish its TLS handshake) within this time, or the connection is closed (slowloris). Applies to the router's API, enrollment and metrics ports and the node's metrics port.",
    },
    { min: 100, max: 600_000, unit: "ms" },
    10000,
  ),
  httpBodyIdleTimeoutMs: int(
    {
      env: `${P}HTTP_BODY_IDLE_TIMEOUT_MS`,
      group: "HTTP servers",
      doc: "A request body that stalls this long between two reads is answered 408 and its connection closed; a whole request may take at most 120 s to arrive. Streaming answers are not affected.",
    },
    { min: 100, max: 600_000, unit: "ms" },
    30000,
  ),
  httpMaxConnectionsPerClient: int(
    {
      env: `${P}HTTP_MAX_CONNECTIONS_PER_CLIENT`,
      group: "HTTP servers",
      doc: "Open connections one client address may hold on each HTTP port; new ones beyond it are closed at once. Clients behind one NAT or proxy share the limit.",
    },
    { min: 1, max: 1_000_000 },
    64,
  ),
};

export type SettingKey = keyof typeof settings;

export const ConfigObject = v.object(settings);

/** The whole configuration with its cross-field rules; each rule's issue points at the setting to change. */
export const ConfigSchema = v.pipe(
  ConfigObject,
  v.forward(
    v.partialCheck(
      [["leaseDurationMs"], ["leaseRenewalIntervalMs"]],
      (c) => c.leaseDurationMs >= 2 * c.leaseRenewalIntervalMs,
      (issue) => {
        const c = issue.input as { leaseDurationMs: number; leaseRenewalIntervalMs: number };
        return `must be at least 2x XEROTIER_AGENT_LEASE_RENEWAL_INTERVAL_MS (${c.leaseRenewalIntervalMs} ms), so a single late renewal does not expire the lease; got a ratio of ${(c.leaseDurationMs / c.leaseRenewalIntervalMs).toFixed(2)}`;
      },
    ),
    ["leaseDurationMs"],
  ),
  v.forward(
    v.partialCheck(
      [["speculativeMethod"], ["speculativeDraftModelPath"], ["speculativeNgramFallback"]],
      // With the n-gram fallback on, the plan falls back and says why instead.
      (c) =>
        !(
          c.speculativeMethod &&
          DRAFT_MODEL_METHODS.includes(c.speculativeMethod) &&
          !c.speculativeDraftModelPath &&
          !c.speculativeNgramFallback
        ),
      "needs a draft model: set XEROTIER_AGENT_SPECULATIVE_DRAFT_MODEL_PATH, choose ngram or an MTP method, or set XEROTIER_AGENT_SPECULATIVE_NGRAM_FALLBACK=1",
    ),
    ["speculativeMethod"],
  ),
  v.forward(
    v.partialCheck(
      [["modelPullBaseDelayMs"], ["modelPullMaxDelayMs"]],
      (c) => c.modelPullBaseDelayMs <= c.modelPullMaxDelayMs,
      "must not exceed XEROTIER_AGENT_MODEL_PULL_MAX_DELAY_MS",
    ),
    ["modelPullBaseDelayMs"],
  ),
);

export type Config = v.InferOutput<typeof ConfigSchema>;
