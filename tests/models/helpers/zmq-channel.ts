/**
 * A minimal request/reply transport for model messages over real ZeroMQ
 * (ROUTER on the router side, DEALER on the node side, MessagePack frames),
 * standing in for the control connection the session will carry them on.
 * The router side can tamper with replies to exercise the node's checks.
 */
import { Packr, Unpackr } from "msgpackr";
import * as zmq from "zeromq";
import type { ModelLibrary } from "../../../src/models/library.ts";
import { PullError } from "../../../src/models/source.ts";
import type { ModelChannel, ModelReply, ModelRequest } from "../../../src/protocol/model-transfer.ts";

const packr = new Packr({ useRecords: false, moreTypes: false, encodeUndefinedAsNil: false });
const unpackr = new Unpackr({ useRecords: false, mapsAsObjects: true, int64AsType: "number" });

export type Tamper = (request: ModelRequest, reply: ModelReply) => ModelReply | undefined;

export async function modelRouter(library: ModelLibrary, tamper?: Tamper) {
  const socket = new zmq.Router({ linger: 0 });
  await socket.bind("tcp://127.0.0.1:*");
  const requests: ModelRequest[] = [];
  const loop = (async () => {
    try {
      for await (const [peer, frame] of socket) {
        const request = unpackr.unpack(frame) as ModelRequest;
        requests.push(request);
        const reply = await library.handle(request);
        const sent = tamper ? tamper(request, reply) : reply;
        if (sent) await socket.send([peer, packr.pack(sent)]);
      }
    } catch {
      // closed
    }
  })();
  return {
    endpoint: socket.lastEndpoint as string,
    requests,
    async close() {
      socket.close();
      await loop;
    },
  };
}

export async function modelChannel(endpoint: string, timeoutMs = 2000) {
  const socket = new zmq.Dealer({ linger: 0 });
  socket.connect(endpoint);
  const pending = new Map<string, (reply: unknown) => void>();
  const loop = (async () => {
    try {
      for await (const [frame] of socket) {
        const reply = unpackr.unpack(frame) as { requestId?: string };
        const done = pending.get(reply.requestId ?? "");
        pending.delete(reply.requestId ?? "");
        done?.(reply);
      }
    } catch {
      // closed
    }
  })();
  const channel: ModelChannel = (request) =>
    new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        pending.delete(request.requestId);
        reject(
          new PullError("XIM_PULL_TIMEOUT", `the router did not answer within ${timeoutMs} ms`, {
            retryable: true,
          }),
        );
      }, timeoutMs);
      pending.set(request.requestId, (reply) => {
        clearTimeout(timer);
        resolve(reply);
      });
      socket.send(packr.pack(request)).catch(reject);
    });
  return {
    channel,
    async close() {
      socket.close();
      await loop;
    },
  };
}
