import { test } from "node:test";
import assert from "node:assert/strict";
import { createServer } from "node:http";
import { Payrail, PayrailError, verifyWebhook, type CallbackEvent } from "../src/index.js";

// Against a real payrail: the Go test sdk/node/node_test.go starts one (with
// mockpg and a worker) and sets these; without them there is nothing to run
// against and the test says so.
const env = process.env;
const api = env.PAYRAIL_E2E_API_URL;

test("create → PG session → confirm with wait → verified payment.paid", { skip: api ? false : "PAYRAIL_E2E_API_URL is not set (run through go test ./sdk/node)" }, async () => {
  const events: CallbackEvent[] = [];
  const bad: string[] = [];
  const srv = createServer((req, res) => {
    let body = "";
    req.on("data", (c) => (body += c));
    req.on("end", () => {
      try {
        events.push(verifyWebhook([env.PAYRAIL_E2E_CALLBACK_SECRET!], req.headers, body));
        res.writeHead(204).end();
      } catch (e) {
        bad.push(String(e));
        res.writeHead(400).end();
      }
    });
  });
  await new Promise<void>((r) => srv.listen(Number(env.PAYRAIL_E2E_CALLBACK_PORT), "127.0.0.1", () => r()));
  try {
    const c = new Payrail(api!, env.PAYRAIL_E2E_CLIENT_ID!, env.PAYRAIL_E2E_CLIENT_SECRET!);
    const o = await c.createOrder({ amount: 15000, orderName: "TypeScript SDK order", merchantOrderId: "ts-1001" });
    assert.equal(o.status, "CREATED");
    const sess = await fetch(env.PAYRAIL_E2E_MOCKPG_URL + "/sandbox/sessions", {
      method: "POST", headers: { "Content-Type": "application/json" }, body: JSON.stringify({ orderId: o.orderId, amount: o.amount }),
    });
    const { paymentKey } = (await sess.json()) as { paymentKey: string };
    const r = await c.confirm(o.orderId, { paymentKey, amount: 15000, paymentToken: o.paymentToken, waitSeconds: 10 });
    assert.equal(r.result, "SUCCESS");
    assert.equal(r.order.status, "PAID");
    const dup = await c.confirm(o.orderId, { paymentKey, amount: 15000, paymentToken: o.paymentToken });
    assert.equal(dup.result, "DUPLICATE");
    await assert.rejects(c.confirm(o.orderId, { paymentKey, amount: 1, paymentToken: o.paymentToken }),
      (e: unknown) => e instanceof PayrailError && e.code === "AMOUNT_MISMATCH");
    const listed: string[] = [];
    for await (const x of c.listOrders({ pageSize: 1 })) listed.push(x.orderId);
    assert.deepEqual(listed, [o.orderId]);
    const cn = await c.cancel(o.orderId, { reason: "customer asked", amount: 5000 });
    assert.equal(cn.status, "PENDING");
    const deadline = Date.now() + 15000;
    while (!events.some((e) => e.type === "payment.paid" && e.data.orderId === o.orderId) && Date.now() < deadline) {
      await new Promise((r) => setTimeout(r, 100));
    }
    assert.deepEqual(bad, []);
    assert.ok(events.some((e) => e.type === "payment.paid" && e.data.orderId === o.orderId), "no verified payment.paid within 15 s");
    const cbs = await c.listCallbacks(o.orderId);
    assert.ok(cbs.length >= 1);
    await c.redeliver(cbs[0].callbackId);
    await assert.rejects(new Payrail(api!, env.PAYRAIL_E2E_CLIENT_ID!, "wrong").getOrder(o.orderId),
      (e: unknown) => e instanceof PayrailError && e.code === "INVALID_SIGNATURE");
  } finally {
    srv.close();
  }
});
