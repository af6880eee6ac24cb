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
 * - At most MAX_MODEL_REQUESTS_PER_NODE of its requests are served at once
 *   (from arrival until the reply is handed to ZeroMQ); more are refused
 *   at once with a small error. A node's pull keeps 4 chunk requests in
 *   flight (models/sources/router.ts), so an honest node never meets it.
 * - When its lease ends (expiry, release, a newer registration) the
 *   replies still being read are dropped instead of sent, and its account
 *   goes away with the last of them.
 *
 * `stats` is the account tests and operators read.
 */
import { contain } from "../core/guard.ts";
import type { Logger } from "../core/log.ts";
import type { ModelLibrary } from "../models/library.ts";
import type { ModelReply } from "../models/router-protocol.ts";
import type { NodeMessageOf } from "../protocol/messages.ts";
import type { ControlPlane, Lease } from "./control-plane.ts";
import type { RouterStore } from "./store.ts";

/** Model requests of one node served at once (a chunk is up to 4 MiB: 32 MiB per node at most). */
export const MAX_MODEL_REQUESTS_PER_NODE = 8;

/** How long a refused node is told to wait before asking again. */
const BUSY_RETRY_MS = 1000;

interface NodeAccount {
  outstanding: number;
  refused: number;
}

export interface ModelServingStats {
  /** Requests being served now (read, or waiting to be handed to ZeroMQ). */
  outstanding: number;
  /** Requests refused for the per-node limit since the account opened. */
  refused: number;
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
    return a ? { outstanding: a.outstanding, refused: a.refused } : undefined;
  }

  close(): void {
    for (const un of this.#unsubscribe) un();
    this.#accounts.clear();
  }

  #request(lease: Lease, m: NodeMessageOf<"model_request">): void {
    const requestId = m.request.requestId;
    let account = this.#accounts.get(lease.nodeId);
    if (!account) {
      account = { outstanding: 0, refused: 0 };
      this.#accounts.set(lease.nodeId, account);
    }
    if (account.outstanding >= MAX_MODEL_REQUESTS_PER_NODE) {
      account.refused++;
      if (account.refused === 1 || account.refused % 1000 === 0)
        this.#log.warn(
          { nodeId: lease.nodeId, refused: account.refused },
          "a node asked for more model transfers at once than allowed; refused",
        );
      this.#reply(lease, {
        type: "model_error",
        requestId,
        code: "unavailable",
        message: `too many model requests in flight from this node (at most ${MAX_MODEL_REQUESTS_PER_NODE} at once); wait for the replies before asking for more`,
        retryAfterMs: BUSY_RETRY_MS,
      });
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
        if (this.#live(nodeId, leaseId)) await this.#cp.send(nodeId, { type: "model_reply", reply });
      })
      .finally(() => {
        served.outstanding--;
        this.#forgetIfGone(nodeId);
      });
    contain(this.#log, "answering a node's model request", work);
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
    if (lease.state === "expired") this.#forgetIfGone(lease.nodeId);
  }
}
