/**
 * @module The router's serving of published models to nodes
 * (`model_request` in, `model_reply` out). A node is trusted with the
 * model it was given, not with the router's models or memory:
 *
 * - It gets only the model assigned to it (`xim router models assign`,
 *   the model_assignments table). Published models belong to the router,
 *   not to a project, so the assignment is the only grant; a request for
 *   anything else is refused with the same answer whether or not the model
 *   exists.
 * - At most MAX_MODEL_REQUESTS_PER_NODE of its requests are held at once,
 *   from arrival until the node acknowledges the reply: every manifest and
 *   chunk reply carries a random receipt (protocol/model-transfer.ts) that
 *   the node echoes in its next requests. Handing a reply to ZeroMQ does
 *   not free its place, since ZeroMQ queues toward a node that does not
 *   read (its limit counts messages, not bytes); only the receipt does,
 *   and a receipt cannot be echoed without reading its reply. Beyond the
 *   limit a request is refused at once with a small retryable error. A
 *   node's pull keeps 4 chunk requests in flight (models/sources/router.ts)
 *   and its session acknowledges every reply it reads (agent/session.ts),
 *   so an honest node never meets the limit.
 * - The account belongs to a lease. When the lease ends (expiry, release)
 *   the replies still being read are dropped instead of sent, and the
 *   account (unacknowledged replies included) goes away with the last of
 *   them; a new registration starts a fresh one, so a node restarted with
 *   its receipts lost is not refused for replies its old process read.
 *   (So a node that leaves and registers again may leave up to the limit
 *   unread per registration; each costs it a registration round.)
 *
 * `stats` is the account tests and operators read.
 */
import { contain } from "../core/guard.ts";
import type { Logger } from "../core/log.ts";
import type { ModelLibrary } from "../models/library.ts";
import type { NodeMessageOf } from "../protocol/messages.ts";
import type { ModelReply } from "../protocol/model-transfer.ts";
import type { ControlPlane, Lease } from "./control-plane.ts";
import type { RouterStore } from "./store.ts";

/**
 * Model requests of one node being served or unacknowledged at once. A
 * count, not bytes: a chunk is at most 4 MiB (MODEL_CHUNK_BYTES), so this
 * holds at most 32 MiB per node, and it leaves an honest pull (4 in flight,
 * its receipts a request behind) twice the room it needs.
 */
export const MAX_MODEL_REQUESTS_PER_NODE = 8;

/** How long a refused node is told to wait before asking again. */
const BUSY_RETRY_MS = 1000;

interface NodeAccount {
  leaseId: string;
  outstanding: number;
  /** Replies sent and not yet acknowledged: receipt -> bytes. */
  unacknowledged: Map<string, number>;
  unacknowledgedBytes: number;
  refused: number;
  unknownReceipts: number;
}

export interface ModelServingStats {
  /** Requests being served now (read, or waiting to be handed to ZeroMQ). */
  outstanding: number;
  /** Replies handed to ZeroMQ whose receipts the node has not echoed. */
  unacknowledged: number;
  /** Their bytes (chunk data; a manifest counts its JSON size). */
  unacknowledgedBytes: number;
  /** Requests refused for the per-node limit since the account opened. */
  refused: number;
  /** Receipts echoed that match no unacknowledged reply (made up, echoed twice, or of an earlier lease). */
  unknownReceipts: number;
}

/** What a reply holds in memory while it waits in ZeroMQ's queue. */
function replyBytes(reply: ModelReply): number {
  if (reply.type === "model_chunk") return reply.data.byteLength;
  if (reply.type === "model_manifest") return Buffer.byteLength(JSON.stringify(reply.manifest));
  return 0;
}

export class ModelServer {
  readonly #library: ModelLibrary;
  readonly #store: RouterStore;
  readonly #cp: ControlPlane;
  readonly #log: Logger;
  readonly #accounts = new Map<string, NodeAccount>();
  readonly #unsubscribe: Array<() => void>;

  constructor(o: { library: ModelLibrary; store: RouterStore; controlPlane: ControlPlane; logger: Logger }) {
    this.#library = o.library;
    this.#store = o.store;
    this.#cp = o.controlPlane;
    this.#log = o.logger.child({ component: "model-serving" });
    this.#unsubscribe = [
      this.#cp.onNodeMessage((lease, m) => {
        if (m.type === "model_request") this.#request(lease, m);
      }),
      this.#cp.onLeaseChange((lease) => this.#leaseChanged(lease)),
    ];
  }

  /** A node's account, or undefined when it holds nothing. */
  stats(nodeId: string): ModelServingStats | undefined {
    const a = this.#accounts.get(nodeId);
    return a
      ? {
          outstanding: a.outstanding,
          unacknowledged: a.unacknowledged.size,
          unacknowledgedBytes: a.unacknowledgedBytes,
          refused: a.refused,
          unknownReceipts: a.unknownReceipts,
        }
      : undefined;
  }

  close(): void {
    for (const un of this.#unsubscribe) un();
    this.#accounts.clear();
  }

  /** This lease's account: a node that registered again starts a new one. */
  #accountOf(lease: Lease): NodeAccount {
    const account = this.#accounts.get(lease.nodeId);
    if (account?.leaseId === lease.leaseId) return account;
    const fresh: NodeAccount = {
      leaseId: lease.leaseId,
      outstanding: 0,
      unacknowledged: new Map(),
      unacknowledgedBytes: 0,
      refused: 0,
      unknownReceipts: 0,
    };
    this.#accounts.set(lease.nodeId, fresh);
    return fresh;
  }

  /** Refuse a request beyond the node's allowance of unread replies (warned once, then every 1000th). */
  #refuseOverLimit(lease: Lease, account: NodeAccount, requestId: string): void {
    account.refused++;
    if (account.refused === 1 || account.refused % 1000 === 0)
      this.#log.warn(
        {
          nodeId: lease.nodeId,
          refused: account.refused,
          outstanding: account.outstanding,
          unacknowledged: account.unacknowledged.size,
        },
        "a node asked for more model transfers than allowed before acknowledging its replies; refused",
      );
    this.#reply(lease, {
      type: "model_error",
      requestId,
      code: "unavailable",
      message: `too many model replies to this node not yet acknowledged (at most ${MAX_MODEL_REQUESTS_PER_NODE} requests in flight or unacknowledged at once); the node must send the receipts of the replies it has read with its next model requests, then ask again`,
      retryAfterMs: BUSY_RETRY_MS,
    });
  }

  #request(lease: Lease, m: NodeMessageOf<"model_request">): void {
    const requestId = m.request.requestId;
    const account = this.#accountOf(lease);
    this.#acknowledge(account, m.request.receipts ?? []);
    if (account.outstanding + account.unacknowledged.size >= MAX_MODEL_REQUESTS_PER_NODE) {
      this.#refuseOverLimit(lease, account, requestId);
      return;
    }
    const assigned = this.#store.getAssignment(lease.nodeId)?.name;
    if (assigned !== m.request.name) {
      this.#reply(lease, {
        type: "model_error",
        requestId,
        code: "not_found",
        message: `model ${m.request.name} is not assigned to this node; the router serves a node only the model assigned to it (xim router models assign)`,
      });
      return;
    }
    account.outstanding++;
    const served = account;
    const { nodeId, leaseId } = lease;
    const work = this.#library
      .handle(m.request)
      .catch((err: unknown): ModelReply => {
        this.#log.error({ err, nodeId: lease.nodeId }, "serving a model request failed");
        return {
          type: "model_error",
          requestId,
          code: "unavailable",
          message: "the router failed to read the model; see its log",
          retryAfterMs: 5000,
        };
      })
      .then(async (reply) => {
        // The node left, or registered again, while the chunk was read: drop it unsent.
        if (!this.#live(nodeId, leaseId)) return;
        // Counted before it is sent: the node may echo its receipt at once.
        const receipt = reply.type === "model_error" ? undefined : reply.receipt;
        if (receipt !== undefined) {
          const bytes = replyBytes(reply);
          served.unacknowledged.set(receipt, bytes);
          served.unacknowledgedBytes += bytes;
        }
        const sent = await this.#cp.send(nodeId, { type: "model_reply", reply });
        if (!sent && receipt !== undefined) this.#acknowledge(served, [receipt]);
      })
      .finally(() => {
        served.outstanding--;
        this.#forgetIfGone(nodeId);
      });
    contain(this.#log, "answering a node's model request", work);
  }

  /** The node read these replies: they no longer hold a place. */
  #acknowledge(account: NodeAccount, receipts: readonly string[]): void {
    for (const receipt of receipts) {
      const bytes = account.unacknowledged.get(receipt);
      if (bytes === undefined) {
        account.unknownReceipts++;
        continue;
      }
      account.unacknowledged.delete(receipt);
      account.unacknowledgedBytes -= bytes;
    }
  }

  #reply(lease: Lease, reply: ModelReply): void {
    void this.#cp.send(lease.nodeId, { type: "model_reply", reply });
  }

  #live(nodeId: string, leaseId: string): boolean {
    const lease = this.#cp.lease(nodeId);
    return lease !== undefined && lease.leaseId === leaseId && lease.state !== "expired";
  }

  /** A node without a live lease keeps no account once its last request is done. */
  #forgetIfGone(nodeId: string): void {
    const a = this.#accounts.get(nodeId);
    if (a && a.outstanding === 0 && this.#cp.lease(nodeId)?.state === "expired")
      this.#accounts.delete(nodeId);
  }

  #leaseChanged(lease: Lease): void {
    // A new registration: the old lease's account goes (its replies still being read are dropped unsent).
    if (this.#accounts.get(lease.nodeId)?.leaseId !== lease.leaseId) this.#accounts.delete(lease.nodeId);
    else if (lease.state === "expired") this.#forgetIfGone(lease.nodeId);
  }
}
