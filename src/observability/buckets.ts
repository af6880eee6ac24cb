/**
 * @module Histogram buckets shared by the router's and the node's metrics.
 */

/**
 * For the time the relay itself adds to a request (router/server-timing.ts):
 * tens of microseconds to a few milliseconds, so finer at the low end than
 * latency buckets; past 100 ms something is wrong and the exact figure
 * matters less.
 */
export const ADDED_BUCKETS = [0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1];
