import { test } from "node:test";
import assert from "node:assert/strict";
import { createServer } from "node:http";
import type { AddressInfo } from "node:net";
import { Payrail, PayrailError } from "../src/index.js";

function serve(handler: (n: number, req: import("node:http").IncomingMessage, res: import("node:http").ServerResponse) => void) {
  let n = 0;
  const seen: Array<Record<string, string | string[] | undefined>> = [];
  const srv = createServer((req, res) => { seen.push(req.headers); handler(++n, req, res); });
  return new Promise<{ url: string; seen: typeof seen; close: () => void }>((resolve) =>
    srv.listen(0, "127.0.0.1", () => resolve({ url: `http://127.0.0.1:${(srv.address() as AddressInfo).port}`, seen, close: () => srv.close() })));
}

test("a 503 is retried with the same Idempotency-Key and a fresh signature", async () => {
  const s = await serve((n, _req, res) => {
    if (n === 1) {
      res.writeHead(503, { "Retry-After": "0", "Content-Type": "application/problem+json" });
      res.end(JSON.stringify({ code: "OVERLOADED", title: "Service Unavailable", detail: "shed" }));
      return;
    }
    res.writeHead(201, { "Content-Type": "application/json" });
    res.end(JSON.stringify({ orderId: "ord_1", status: "CREATED", paymentToken: "pt_1" }));
  });
  try {
    const c = new Payrail(s.url, "ck_1", "cs_1", { backoffMs: 1 });
    const o = await c.createOrder({ amount: 1000, orderName: "x" });
    assert.equal(o.orderId, "ord_1");
    assert.equal(s.seen.length, 2);
    assert.ok(s.seen[0]["idempotency-key"]);
    assert.equal(s.seen[0]["idempotency-key"], s.seen[1]["idempotency-key"]);
    assert.notEqual(s.seen[0]["x-payrail-nonce"], s.seen[1]["x-payrail-nonce"]);
  } finally {
    s.close();
  }
});

test("a refusal is a PayrailError with payrail's code; 429 is given up after the retries", async () => {
  const s = await serve((_n, req, res) => {
    res.setHeader("Content-Type", "application/problem+json");
    if (req.url!.endsWith("/missing")) {
      res.writeHead(404);
      res.end(JSON.stringify({ code: "ORDER_NOT_FOUND", title: "Not Found", detail: "order not found" }));
      return;
    }
    res.writeHead(429, { "Retry-After": "0" });
    res.end(JSON.stringify({ code: "RATE_LIMITED", title: "Too Many Requests", detail: "slow down" }));
  });
  try {
    const c = new Payrail(s.url, "ck_1", "cs_1", { retries: 2, backoffMs: 1 });
    await assert.rejects(c.getOrder("missing"), (e: unknown) => e instanceof PayrailError && e.code === "ORDER_NOT_FOUND" && e.status === 404);
    const before = s.seen.length;
    await assert.rejects(c.getOrder("busy"), (e: unknown) => e instanceof PayrailError && e.code === "RATE_LIMITED");
    assert.equal(s.seen.length - before, 3);
  } finally {
    s.close();
  }
});
