import { test } from "node:test";
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { canonicalString, sign, nonce } from "../src/index.js";

// The golden vectors shared with the Go SDK and payrail's verifier.
const file = JSON.parse(readFileSync(new URL("../../../../internal/auth/testdata/vectors.json", import.meta.url), "utf8"));

test("signing vectors", () => {
  assert.ok(file.vectors.length > 0);
  for (const v of file.vectors) {
    assert.equal(canonicalString(v.method, v.target, v.timestamp, v.nonce, v.body), v.canonical, v.name);
    assert.equal(sign(v.secret, v.method, v.target, v.timestamp, v.nonce, v.body), v.signature, v.name);
  }
});

test("nonces are 32 URL-safe characters and differ", () => {
  const a = nonce(), b = nonce();
  assert.match(a, /^[A-Za-z0-9_-]{32}$/);
  assert.notEqual(a, b);
});
