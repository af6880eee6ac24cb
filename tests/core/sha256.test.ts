import assert from "node:assert/strict";
import { test } from "node:test";
import { sha256Hex } from "../../src/core/sha256.ts";

test("sha256Hex gives the FIPS 180-2 digest of text (as UTF-8) and of bytes alike", () => {
  const abc = "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad";
  assert.equal(sha256Hex("abc"), abc);
  assert.equal(sha256Hex(new TextEncoder().encode("abc")), abc);
  assert.equal(sha256Hex("é"), sha256Hex(Buffer.from("é", "utf8")));
});
