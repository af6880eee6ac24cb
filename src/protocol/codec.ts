/**
 * @module MessagePack encoding of wire messages, and decoders that never
 * throw: any bytes from the network give either a valid message or a
 * reason (oversized, malformed, version, unknown_type, invalid) that the
 * caller counts and drops. Decoding is split by direction so a node never
 * accepts a node-bound message type and the other way round.
 */
import { Packr, Unpackr } from "msgpackr";
import * as v from "valibot";
import {
  type NodeMessage,
  NodeMessageSchema,
  type Outgoing,
  type RouterMessage,
  RouterMessageSchema,
} from "./messages.ts";
import { PROTOCOL_VERSION } from "./version.ts";

/** Largest payload a decoder accepts; bigger frames are counted as oversized and dropped. */
export const MAX_MESSAGE_BYTES = 16 * 1024 * 1024;
/** ZMQ_MAXMSGSIZE: libzmq disconnects a peer that sends more (a hard memory bound). */
export const SOCKET_MAX_MESSAGE_BYTES = 64 * 1024 * 1024;

// Plain maps only: records/structures would make the wire depend on shared state.
const packr = new Packr({ useRecords: false, moreTypes: false, encodeUndefinedAsNil: false });
const unpackr = new Unpackr({ useRecords: false, mapsAsObjects: true, int64AsType: "number" });

export type DropReason = "oversized" | "malformed" | "version" | "unknown_type" | "invalid";

export type DecodeResult<M> =
  | { ok: true; message: M }
  | {
      ok: false;
      reason: DropReason;
      detail: string;
      /** The peer's version and type when they could be read (version mismatches). */
      peerVersion?: number;
      type?: string;
      /** The raw map, for the few fields frozen across versions (register_refused). */
      raw?: Record<string, unknown>;
    };

/**
 * Each message type's own schema, found by the `type` field: the same
 * schemas as the variant in messages.ts, without trying the other types
 * first (valibot's variant builds an issue for every option it passes,
 * which was a measurable part of the router's CPU per chunk).
 */
type SchemasByType<M> = ReadonlyMap<string, v.GenericSchema<unknown, M>>;

function byType<M>(variant: { options: ReadonlyArray<{ entries: { type: { literal: string } } }> }) {
  return new Map(
    variant.options.map((o) => [o.entries.type.literal, o as unknown as v.GenericSchema<unknown, M>]),
  ) as SchemasByType<M>;
}

const FROM_NODE = byType<NodeMessage>(NodeMessageSchema);
const FROM_ROUTER = byType<RouterMessage>(RouterMessageSchema);

export function encodeMessage(message: Outgoing<NodeMessage> | Outgoing<RouterMessage>): Buffer {
  return packr.pack({ v: PROTOCOL_VERSION, ...message });
}

function checkFrame(frame: Uint8Array): Extract<DecodeResult<never>, { ok: false }> | undefined {
  if (frame.byteLength > MAX_MESSAGE_BYTES) {
    return { ok: false, reason: "oversized", detail: `${frame.byteLength} bytes > ${MAX_MESSAGE_BYTES}` };
  }
  if (frame.byteLength === 0) return { ok: false, reason: "malformed", detail: "empty frame" };
  return undefined;
}

function notMessagePack(err: unknown): Extract<DecodeResult<never>, { ok: false }> {
  return { ok: false, reason: "malformed", detail: `not MessagePack: ${String(err).slice(0, 200)}` };
}

/** Check one decoded value: a map with an integer `v` and a known `type` that passes its schema. */
function validate<M>(raw: unknown, schemas: SchemasByType<M>): DecodeResult<M> {
  if (raw === null || typeof raw !== "object" || Array.isArray(raw) || raw instanceof Uint8Array) {
    return { ok: false, reason: "malformed", detail: "not a map" };
  }
  const map = raw as Record<string, unknown>;
  const version = map.v;
  const type = map.type;
  if (typeof version !== "number" || !Number.isInteger(version) || typeof type !== "string") {
    return { ok: false, reason: "malformed", detail: "missing integer 'v' or string 'type'" };
  }
  const printableType = type.slice(0, 64);
  if (version !== PROTOCOL_VERSION) {
    return {
      ok: false,
      reason: "version",
      detail: `protocol v${version}, expected v${PROTOCOL_VERSION}`,
      peerVersion: version,
      type: printableType,
      raw: map,
    };
  }
  const schema = schemas.get(type);
  if (!schema) {
    return {
      ok: false,
      reason: "unknown_type",
      detail: `unknown type '${printableType}'`,
      type: printableType,
    };
  }
  const parsed = v.safeParse(schema, map);
  if (!parsed.success) {
    const issue = parsed.issues[0];
    const path = issue.path?.map((p) => String(p.key)).join(".") ?? "";
    return {
      ok: false,
      reason: "invalid",
      detail: `${printableType}: ${path ? `${path}: ` : ""}${issue.message}`.slice(0, 300),
      type: printableType,
    };
  }
  return { ok: true, message: parsed.output };
}

function decodeWith<M>(frame: Uint8Array, schemas: SchemasByType<M>): DecodeResult<M> {
  const bad = checkFrame(frame);
  if (bad) return bad;
  let raw: unknown;
  try {
    raw = unpackr.unpack(frame);
  } catch (err) {
    return notMessagePack(err);
  }
  return validate(raw, schemas);
}

/** Bad messages in one batch frame after which the rest of the frame is dropped unread. */
const MAX_BATCH_FAILURES = 16;

/**
 * Decode a frame that holds one or more messages back to back (a sender's
 * batch, see encodeBatch). Each message is checked on its own: a bad one is
 * reported beside the good ones, and bytes that stop being MessagePack end
 * the frame with one "malformed" result.
 */
function decodeAllWith<M>(frame: Uint8Array, schemas: SchemasByType<M>): DecodeResult<M>[] {
  const bad = checkFrame(frame);
  if (bad) return [bad];
  const results: DecodeResult<M>[] = [];
  let failures = 0;
  try {
    unpackr.unpackMultiple(frame, (value: unknown) => {
      const result = validate(value, schemas);
      results.push(result);
      // A sender's batch holds only maps: a value that is not a message, or many bad ones, means the
      // rest is garbage. Without this end, one 16 MiB frame of nil bytes became 16.7 million results.
      if (!result.ok && (result.reason === "malformed" || ++failures >= MAX_BATCH_FAILURES)) return false;
      return undefined;
    });
  } catch (err) {
    results.push(notMessagePack(err));
  }
  return results;
}

/**
 * One frame carrying several encoded messages back to back; the receiver's
 * decodeNodeMessages/decodeRouterMessages return them in order. Fewer,
 * larger frames mean fewer CURVE boxes and ZeroMQ messages per chunk.
 */
export function encodeBatch(frames: readonly Buffer[]): Buffer {
  return frames.length === 1 ? frames[0] : Buffer.concat(frames);
}

/** Every message of a frame a router received from a node. */
export function decodeNodeMessages(frame: Uint8Array): DecodeResult<NodeMessage>[] {
  return decodeAllWith(frame, FROM_NODE);
}

/** Every message of a frame a node received from a router. */
export function decodeRouterMessages(frame: Uint8Array): DecodeResult<RouterMessage>[] {
  return decodeAllWith(frame, FROM_ROUTER);
}

/** Decode what a router received from a node. */
export function decodeNodeMessage(frame: Uint8Array): DecodeResult<NodeMessage> {
  return decodeWith(frame, FROM_NODE);
}

/** Decode what a node received from a router. */
export function decodeRouterMessage(frame: Uint8Array): DecodeResult<RouterMessage> {
  return decodeWith(frame, FROM_ROUTER);
}
