/**
 * The limits a node's streams are held to (src/router/stream-limits.ts):
 * which windows a stream and a registration may announce, and which flow
 * settings the router itself accepts.
 */
import assert from "node:assert/strict";
import { test } from "node:test";
import {
  checkRouterFlow,
  MAX_STREAM_WINDOW_BYTES,
  MIN_STREAM_WINDOW_BYTES,
  registerWindowProblem,
  streamWindowProblem,
} from "../../src/router/stream-limits.ts";

test("a stream's window lies between the minimum and the window the router asked for; 0 is refused", () => {
  assert.equal(streamWindowProblem(65536, 65536), null);
  assert.equal(streamWindowProblem(MIN_STREAM_WINDOW_BYTES, 65536), null);
  assert.equal(streamWindowProblem(undefined, 65536), null, "absent: the router's own window is used");
  assert.match(streamWindowProblem(0, 65536) ?? "", /switched flow control off/);
  assert.match(streamWindowProblem(1023, 65536) ?? "", /1023 bytes; accepted: 1024 to 65536/);
  assert.match(streamWindowProblem(65537, 65536) ?? "", /65537 bytes; accepted: 1024 to 65536/);
  assert.equal(streamWindowProblem(0, 0), null, "the router's flow control is off: nothing to hold to");
});

test("a registration needs flow control on when the router runs it", () => {
  assert.equal(registerWindowProblem(65536, 65536), null);
  assert.equal(registerWindowProblem(1 << 30, 65536), null, "a larger node window is capped per stream");
  assert.match(registerWindowProblem(0, 65536) ?? "", /FLOW_CONTROL_ENABLED=false/);
  assert.match(registerWindowProblem(512, 65536) ?? "", /512 bytes; this router accepts 1024 bytes or more/);
  assert.equal(registerWindowProblem(0, 0), null);
});

test("the router's own window is 0 or within bounds, its event limit within bounds", () => {
  for (const windowBytes of [0, MIN_STREAM_WINDOW_BYTES, 65536, MAX_STREAM_WINDOW_BYTES])
    assert.doesNotThrow(() => checkRouterFlow({ windowBytes }));
  for (const windowBytes of [1, 1023, MAX_STREAM_WINDOW_BYTES + 1, 1.5])
    assert.throws(
      () => checkRouterFlow({ windowBytes }),
      /out of range; accepted: 0 \(flow control off\) or 1024/,
    );
  assert.throws(
    () => checkRouterFlow({ windowBytes: 65536, maxEventBytes: 10 }),
    /largest SSE event 10 bytes/,
  );
});
