/**
 * Valid wire messages of the inference path in both directions, and a
 * value generator of every MessagePack kind, shared by the decoder fuzz.
 */
import fc from "fast-check";
import { Packr } from "msgpackr";
import type { DecodeResult } from "../../src/protocol/codec.ts";
import { decodeNodeMessage, decodeRouterMessage } from "../../src/protocol/codec.ts";
import type { NodeMessage, Outgoing, RouterMessage } from "../../src/protocol/messages.ts";

export type Decoder = (frame: Uint8Array) => DecodeResult<unknown>;

export const packr = new Packr({ useRecords: false, moreTypes: false, encodeUndefinedAsNil: false });
const lease = { leaseId: "a".repeat(32), epoch: 3 };
const status = { engine: "ready" as const, models: ["m"], maxConcurrent: 4, freeSlots: 2 };

/** The messages that carry the inference path, in both directions. */
export const nodeMessages: Outgoing<NodeMessage>[] = [
  { type: "lease_renew", ...lease, seq: 7, ...status },
  { type: "drain", ...lease, reason: "SIGTERM", graceMs: 30000 },
  {
    type: "stream_start",
    requestId: "r1",
    status: 200,
    contentType: "text/event-stream",
    windowBytes: 65536,
    replenishBytes: 32768,
  },
  { type: "chunk", requestId: "r1", seq: 0, data: new TextEncoder().encode("data: {}\n\n") },
  { type: "stream_end", requestId: "r1", seq: 1, usage: { promptTokens: 3, completionTokens: 5 } },
  { type: "stream_error", requestId: "r1", seq: 2, code: "stalled", message: "no credit", status: 504 },
];
export const routerMessages: Outgoing<RouterMessage>[] = [
  { type: "lease_ack", ...lease, seq: 7, expiresInMs: 30000 },
  {
    type: "dispatch",
    requestId: "r1",
    ...lease,
    project: "p",
    tenant: "t",
    model: "m",
    path: "/v1/chat/completions",
    stream: true,
    body: new TextEncoder().encode('{"messages":[]}'),
    windowBytes: 65536,
    deadlineMs: 0,
  },
  { type: "cancel", requestId: "r1", reason: "client disconnected" },
  { type: "credit", requestId: "r1", bytes: 32768 },
  { type: "drain_request", reason: "maintenance", graceMs: 1000 },
];

/** Values of every MessagePack kind, including ones JSON lacks (binary, NaN, huge numbers). */
export const anyValue = fc.oneof(
  fc.constant(null),
  fc.boolean(),
  fc.integer(),
  fc.constantFrom(-1, 0, 2 ** 31, 2 ** 53 + 2, Number.NaN, Number.POSITIVE_INFINITY, -0),
  fc.double(),
  fc.string({ maxLength: 40 }),
  fc.uint8Array({ maxLength: 40 }),
  fc.array(fc.jsonValue({ maxDepth: 1 }), { maxLength: 4 }),
  fc.dictionary(fc.string({ maxLength: 6 }), fc.jsonValue({ maxDepth: 1 }), { maxKeys: 4 }),
);

export const sides: Array<{
  name: string;
  messages: Array<Record<string, unknown>>;
  one: Decoder;
  other: Decoder;
}> = [
  {
    name: "router decoding node messages",
    messages: nodeMessages as unknown as Array<Record<string, unknown>>,
    one: decodeNodeMessage,
    other: decodeRouterMessage,
  },
  {
    name: "node decoding router messages",
    messages: routerMessages as unknown as Array<Record<string, unknown>>,
    one: decodeRouterMessage,
    other: decodeNodeMessage,
  },
];
