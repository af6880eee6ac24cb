/**
 * @module Every message of the wire protocol as a valibot schema (the one
 * source of truth; docs/protocol.md explains them). Node and router import
 * these same schemas; types are inferred from them. Messages are split by
 * direction so each side validates only what it may receive.
 */
import * as v from "valibot";
import { isTerminalSafe } from "../core/terminal-text.ts";
import { NODE_STATES, NodeConditionsSchema } from "./conditions.ts";
import { ModelReplySchema, ModelRequestSchema } from "./model-transfer.ts";
import { PROTOCOL_VERSION } from "./version.ts";

const version = v.literal(PROTOCOL_VERSION);
const id = (max = 128) => v.pipe(v.string(), v.minLength(1), v.maxLength(max));
const hex = (len: number) => v.pipe(v.string(), v.regex(new RegExp(`^[0-9a-f]{${len}}$`)));
const count = v.pipe(v.number(), v.integer(), v.minValue(0), v.maxValue(Number.MAX_SAFE_INTEGER));
const ms = v.pipe(v.number(), v.integer(), v.minValue(0), v.maxValue(86_400_000 * 365));
const bytes = v.instance(Uint8Array);
const text = (max = 4096) => v.pipe(v.string(), v.maxLength(max));
/** A node's self-description that operators' commands print: bounded, and no terminal control characters. */
const printable = (max: number) =>
  v.pipe(text(max), v.check(isTerminalSafe, "has control characters; only printable text is accepted"));

export const NodeIdSchema = v.pipe(v.string(), v.regex(/^node_[0-9a-f]{24}$/));
export const RoutingIdSchema = v.pipe(v.string(), v.regex(/^[cs]\.[0-9a-f]{32}$/));

export const ENGINE_STATES = ["none", "loading", "ready", "failed"] as const;

/** What a node reports about its engine and capacity, in register, renewals and status updates. */
export const NodeStatusFields = {
  engine: v.picklist(ENGINE_STATES),
  models: v.pipe(v.array(text(256)), v.maxLength(256)),
  maxConcurrent: count,
  freeSlots: count,
  /** The node's lifecycle state (absent from a node that does not say; read as its engine state). */
  state: v.optional(v.picklist(NODE_STATES)),
  /** What the node's own checks found wrong (empty: nothing); see ./conditions.ts. */
  conditions: v.optional(NodeConditionsSchema, []),
};

export const HardwareSchema = v.object({
  hostname: printable(256),
  platform: printable(64),
  arch: printable(64),
  cpus: count,
  memoryBytes: count,
  gpus: v.pipe(v.array(v.object({ name: printable(256), memoryBytes: count })), v.maxLength(64)),
});
export type Hardware = v.InferOutput<typeof HardwareSchema>;

const lease = { leaseId: hex(32), epoch: count };

// ---- node -> router, control socket -----------------------------------------------------------

export const RegisterSchema = v.object({
  v: version,
  type: v.literal("register"),
  nodeId: NodeIdSchema,
  lastEpoch: count,
  nonce: hex(32),
  /** The router's `register_challenge` answered by this register (null: asking for one). */
  challenge: v.nullable(hex(32)),
  proof: hex(64),
  controlRoutingId: RoutingIdSchema,
  streamingRoutingId: v.nullable(RoutingIdSchema),
  agentVersion: printable(64),
  hardware: HardwareSchema,
  ...NodeStatusFields,
  requestedLeaseMs: ms,
  renewalIntervalMs: ms,
  /** The node's credit window per stream (FLOW_CONTROL_WINDOW_BYTES; 0: its flow control is off). */
  windowBytes: count,
});

export const LeaseRenewSchema = v.object({
  v: version,
  type: v.literal("lease_renew"),
  ...lease,
  seq: count,
  ...NodeStatusFields,
});

export const NodeStatusSchema = v.object({
  v: version,
  type: v.literal("node_status"),
  ...lease,
  ...NodeStatusFields,
  detail: v.optional(
    v.object({
      reason: text(128),
      message: text(),
      exitCode: v.optional(v.nullable(v.number())),
      logTail: v.optional(v.pipe(v.array(text(4096)), v.maxLength(200))),
    }),
  ),
});

export const DrainSchema = v.object({
  v: version,
  type: v.literal("drain"),
  ...lease,
  reason: text(256),
  graceMs: ms,
});

export const LeaseReleaseSchema = v.object({ v: version, type: v.literal("lease_release"), ...lease });

export const PingSchema = v.object({
  v: version,
  type: v.literal("ping"),
  nonce: hex(32),
  sentAtMs: count,
});

/** A model transfer request (src/protocol/model-transfer.ts): manifest or one chunk of a published model. */
export const ModelRequestMessageSchema = v.object({
  v: version,
  type: v.literal("model_request"),
  request: ModelRequestSchema,
});

export const MODEL_PROGRESS_STATES = ["pulling", "verifying", "ready", "failed"] as const;

/**
 * How a pull of an assigned model (`model_assign`) goes: sent at most about
 * once a second while bytes move, and at every change of state. `ready`: the
 * model is in the node's cache and the engine is (re)starting with it (its
 * loading and readiness follow in `node_status`); `failed`: `message` says why.
 */
export const ModelProgressSchema = v.object({
  v: version,
  type: v.literal("model_progress"),
  ...lease,
  assignmentId: id(64),
  name: id(256),
  state: v.picklist(MODEL_PROGRESS_STATES),
  bytesDone: count,
  bytesTotal: count,
  message: v.optional(text()),
});

// ---- node -> router, streaming socket (or control when the streaming socket is off) ---------

const stream = { requestId: id(128) };

export const StreamStartSchema = v.object({
  v: version,
  type: v.literal("stream_start"),
  ...stream,
  status: v.pipe(v.number(), v.integer(), v.minValue(100), v.maxValue(599)),
  contentType: text(256),
  /** The stream's effective credit window (the node caps the router's); 0 = flow control off. */
  windowBytes: v.optional(count),
  /** The router replenishes once the client has taken this many bytes (window x REPLENISH_THRESHOLD). */
  replenishBytes: v.optional(count),
  /** The node's own time before this start, microseconds (the router's Server-Timing `node`); absent from older nodes. */
  addedUs: v.optional(count),
});

export const ChunkSchema = v.object({
  v: version,
  type: v.literal("chunk"),
  ...stream,
  seq: count,
  data: bytes,
});

export const StreamEndSchema = v.object({
  v: version,
  type: v.literal("stream_end"),
  ...stream,
  seq: count,
  usage: v.optional(v.object({ promptTokens: count, completionTokens: count })),
  finishReason: v.optional(text(64)),
});

export const STREAM_ERROR_CODES = [
  "engine_error",
  "stalled",
  "cancelled",
  "overloaded",
  "draining",
  "bad_request",
  "internal",
] as const;

export const StreamErrorSchema = v.object({
  v: version,
  type: v.literal("stream_error"),
  ...stream,
  seq: count,
  code: v.picklist(STREAM_ERROR_CODES),
  message: text(),
  status: v.pipe(v.number(), v.integer(), v.minValue(400), v.maxValue(599)),
});

/** The node already runs a stream with this requestId (a replay, or a router bug): that stream goes on. */
export const DispatchRefusedSchema = v.object({
  v: version,
  type: v.literal("dispatch_refused"),
  ...stream,
  code: v.picklist(["duplicate_request"]),
  message: text(),
});

// ---- router -> node, control socket ----------------------------------------------------------

export const RegisterAckSchema = v.object({
  v: version,
  type: v.literal("register_ack"),
  nodeId: NodeIdSchema,
  ...lease,
  leaseDurationMs: ms,
  renewalIntervalMs: ms,
  routerVersion: text(64),
  /** The router's clock (epoch ms) as it answered: the node compares its own (clock_skew). Absent from older routers. */
  routerTimeMs: v.optional(count),
});

export const REGISTER_REFUSAL_CODES = [
  "version_mismatch",
  "unknown_node",
  "revoked",
  "bad_proof",
  "invalid",
  "flow_control",
] as const;

/**
 * The answer to a `register` without a challenge: the node registers again
 * with this value in its proof, within `expiresInMs` (single use, bound to
 * the connection that asked), so a sniffed register cannot be replayed.
 */
export const RegisterChallengeSchema = v.object({
  v: version,
  type: v.literal("register_challenge"),
  challenge: hex(32),
  expiresInMs: ms,
});

/**
 * Frozen across versions (docs/protocol.md): `v` is any integer here, so a
 * node of another version can still read why it was refused.
 */
export const RegisterRefusedSchema = v.object({
  v: v.pipe(v.number(), v.integer()),
  type: v.literal("register_refused"),
  code: v.picklist(REGISTER_REFUSAL_CODES),
  message: text(),
  upgrade: v.nullable(v.picklist(["node", "router"])),
  routerProtocolVersion: count,
});

export const LeaseAckSchema = v.object({
  v: version,
  type: v.literal("lease_ack"),
  ...lease,
  seq: count,
  expiresInMs: ms,
  /** The router's clock (epoch ms) as it answered: the node compares its own (clock_skew). Absent from older routers. */
  routerTimeMs: v.optional(count),
});

export const LEASE_REFUSAL_CODES = ["fenced", "expired", "unknown_lease"] as const;

export const LeaseRefusedSchema = v.object({
  v: version,
  type: v.literal("lease_refused"),
  ...lease,
  code: v.picklist(LEASE_REFUSAL_CODES),
  message: text(),
  currentEpoch: count,
});

export const PongSchema = v.object({
  v: version,
  type: v.literal("pong"),
  nonce: hex(32),
  sentAtMs: count,
});

export const DISPATCH_PATHS = ["/v1/chat/completions", "/v1/completions"] as const;

export const DispatchSchema = v.object({
  v: version,
  type: v.literal("dispatch"),
  ...stream,
  ...lease,
  project: text(64),
  tenant: text(256),
  model: text(256),
  path: v.picklist(DISPATCH_PATHS),
  stream: v.boolean(),
  body: bytes,
  windowBytes: count,
  deadlineMs: ms,
});

export const CancelSchema = v.object({
  v: version,
  type: v.literal("cancel"),
  ...stream,
  reason: text(256),
});

export const DrainRequestSchema = v.object({
  v: version,
  type: v.literal("drain_request"),
  reason: text(256),
  graceMs: ms,
});

/** The operator assigned a published model to this node (`xim router models assign`): pull it, then serve it. */
export const ModelAssignSchema = v.object({
  v: version,
  type: v.literal("model_assign"),
  assignmentId: id(64),
  name: id(256),
});

/** The operator withdrew that assignment (`xim router models unassign`): stop its pull if it still runs. */
export const ModelUnassignSchema = v.object({
  v: version,
  type: v.literal("model_unassign"),
  assignmentId: id(64),
});

/**
 * The operator revoked this node (`xim router nodes revoke`): its lease is
 * over, its streams are ended, and its key never registers or enrolls
 * again. The node stops and exits (a revoked node fixes nothing by retrying).
 */
export const NodeRevokedSchema = v.object({
  v: version,
  type: v.literal("node_revoked"),
  nodeId: NodeIdSchema,
  message: text(),
});

// ---- router -> node, streaming socket --------------------------------------------------------

export const CreditSchema = v.object({
  v: version,
  type: v.literal("credit"),
  ...stream,
  bytes: count,
});

/** The answer to a model_request; chunks are up to 4 MiB, so it travels on the streaming socket. */
export const ModelReplyMessageSchema = v.object({
  v: version,
  type: v.literal("model_reply"),
  reply: ModelReplySchema,
});

// ---- by direction ----------------------------------------------------------------------------

/** Everything a router may receive from a node (either socket). */
export const NodeMessageSchema = v.variant("type", [
  RegisterSchema,
  LeaseRenewSchema,
  NodeStatusSchema,
  DrainSchema,
  LeaseReleaseSchema,
  PingSchema,
  StreamStartSchema,
  ChunkSchema,
  StreamEndSchema,
  StreamErrorSchema,
  DispatchRefusedSchema,
  ModelRequestMessageSchema,
  ModelProgressSchema,
]);

/** Everything a node may receive from a router (either socket). */
export const RouterMessageSchema = v.variant("type", [
  RegisterAckSchema,
  RegisterRefusedSchema,
  RegisterChallengeSchema,
  LeaseAckSchema,
  LeaseRefusedSchema,
  PongSchema,
  DispatchSchema,
  CancelSchema,
  DrainRequestSchema,
  CreditSchema,
  ModelReplyMessageSchema,
  ModelAssignSchema,
  ModelUnassignSchema,
  NodeRevokedSchema,
]);

export type NodeMessage = v.InferOutput<typeof NodeMessageSchema>;
export type RouterMessage = v.InferOutput<typeof RouterMessageSchema>;
export type NodeMessageType = NodeMessage["type"];
export type RouterMessageType = RouterMessage["type"];
export type NodeMessageOf<T extends NodeMessageType> = Extract<NodeMessage, { type: T }>;
export type RouterMessageOf<T extends RouterMessageType> = Extract<RouterMessage, { type: T }>;

export type Register = NodeMessageOf<"register">;
export type LeaseRenew = NodeMessageOf<"lease_renew">;
export type Dispatch = RouterMessageOf<"dispatch">;
export type Chunk = NodeMessageOf<"chunk">;
export type NodeStatus = Pick<Register, "engine" | "models" | "maxConcurrent" | "freeSlots">;

export const NODE_MESSAGE_TYPES: readonly NodeMessageType[] = NodeMessageSchema.options.map(
  (o) => o.entries.type.literal,
);
export const ROUTER_MESSAGE_TYPES: readonly RouterMessageType[] = RouterMessageSchema.options.map(
  (o) => o.entries.type.literal,
);

/** Node -> router messages that belong on the streaming socket (when it is enabled). */
export const STREAM_PLANE_NODE_TYPES: ReadonlySet<NodeMessageType> = new Set([
  "stream_start",
  "chunk",
  "stream_end",
  "stream_error",
]);
/** Router -> node messages that belong on the streaming socket. */
export const STREAM_PLANE_ROUTER_TYPES: ReadonlySet<RouterMessageType> = new Set(["credit", "model_reply"]);

/** A message as the sender builds it: everything but `v`, which the codec adds. */
/** Fields a receiver defaults when they are absent, so a sender may leave them out. */
type Defaulted = "conditions";
export type Outgoing<M> = M extends unknown
  ? Omit<M, "v" | Defaulted> & Partial<Pick<M, Extract<keyof M, Defaulted>>>
  : never;

// ---- enrollment (HTTPS JSON) -----------------------------------------------------------------

export const Z85KeySchema = v.pipe(v.string(), v.regex(/^[0-9a-zA-Z.\-:+=^!/*?&<>()[\]{}@%$#]{40}$/));

export const EnrollRequestSchema = v.object({
  protocolVersion: v.pipe(v.number(), v.integer()),
  joinKey: v.pipe(v.string(), v.maxLength(2048)),
  nodePublicKey: Z85KeySchema,
  hostname: printable(256),
  agentVersion: printable(64),
});
export type EnrollRequest = v.InferOutput<typeof EnrollRequestSchema>;

export const EnrollResponseSchema = v.object({
  protocolVersion: v.pipe(v.number(), v.integer()),
  nodeId: NodeIdSchema,
  project: text(64),
  routerPublicKey: Z85KeySchema,
  controlEndpoint: v.pipe(v.string(), v.startsWith("tcp://")),
  streamingEndpoint: v.pipe(v.string(), v.startsWith("tcp://")),
  lease: v.object({ durationMs: ms, renewalIntervalMs: ms }),
  labels: v.record(v.string(), v.string()),
  /**
   * false only for a router started with `--insecure-zmq` (development and
   * benchmarks): its ZeroMQ sockets run without CURVE, and a node connects
   * to it only with XEROTIER_AGENT_ALLOW_INSECURE=1. Absent means true.
   */
  curve: v.optional(v.boolean(), true),
});
export type EnrollResponse = v.InferOutput<typeof EnrollResponseSchema>;

export const ENROLL_ERROR_CODES = [
  "malformed_request",
  "malformed_key",
  "unknown_key",
  "revoked_key",
  "used_key",
  "expired_key",
  "node_key_in_use",
  "version_mismatch",
  "internal",
] as const;
export type EnrollErrorCode = (typeof ENROLL_ERROR_CODES)[number];

/** `POST /v1/enroll/check`: whether a join key would enroll a node now (nothing is spent). */
export const JoinKeyCheckRequestSchema = v.object({ joinKey: v.pipe(v.string(), v.maxLength(4096)) });
export const JoinKeyCheckResponseSchema = v.object({
  ok: v.literal(true),
  project: v.pipe(v.string(), v.maxLength(64)),
  usesLeft: v.pipe(v.number(), v.integer(), v.minValue(0)),
  expiresAt: v.nullable(v.pipe(v.string(), v.maxLength(64))),
});
export type JoinKeyCheckResponse = v.InferOutput<typeof JoinKeyCheckResponseSchema>;

export const EnrollErrorSchema = v.object({
  error: v.object({
    code: v.picklist(ENROLL_ERROR_CODES),
    message: text(),
    upgrade: v.optional(v.nullable(v.picklist(["node", "router"]))),
  }),
});
export type EnrollErrorBody = v.InferOutput<typeof EnrollErrorSchema>;
