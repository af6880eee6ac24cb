/**
 * @module The node's side of model-reply receipts: the receipts of the
 * replies it has read, waiting to ride on its next model requests (see
 * protocol/model-transfer.ts). One book per connection to the router, not per
 * pull: a reply read after its request timed out, or the last replies of
 * a finished pull, must still be acknowledged, or the router keeps their
 * places and refuses this node's later pulls.
 */
import { MAX_RECEIPTS_PER_REQUEST } from "../protocol/model-transfer.ts";

/**
 * Receipts kept at most. An honest router leaves a node a handful of
 * unacknowledged replies, so this only bounds what a hostile one can make
 * the node hold; the oldest are dropped first.
 */
const MAX_PENDING_RECEIPTS = 1024;

export class ReceiptBook {
  #pending: string[] = [];

  /** A reply the node has read: keep its receipt, if it carries one. */
  note(reply: { receipt?: string }): void {
    if (typeof reply.receipt !== "string") return;
    this.#pending.push(reply.receipt);
    if (this.#pending.length > MAX_PENDING_RECEIPTS) this.#pending.shift();
  }

  /** The receipts for the next request (at most MAX_RECEIPTS_PER_REQUEST, oldest first). */
  take(): string[] {
    return this.#pending.splice(0, MAX_RECEIPTS_PER_REQUEST);
  }

  /** Receipts taken for a request that could not be sent: they go with the next one. */
  giveBack(receipts: readonly string[]): void {
    this.#pending.unshift(...receipts);
    if (this.#pending.length > MAX_PENDING_RECEIPTS) this.#pending.length = MAX_PENDING_RECEIPTS;
  }

  get size(): number {
    return this.#pending.length;
  }
}
