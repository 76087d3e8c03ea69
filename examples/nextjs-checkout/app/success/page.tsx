import { PayrailError } from "@payrail/node";
import { client, shop } from "@/lib/payrail";
import Callbacks from "../callbacks";

export const dynamic = "force-dynamic";

// Where the PG sends the buyer. The query string is the browser's word: the
// amount is checked against the order the shop created, and the outcome is
// payrail's answer to a server-side confirm.
export default async function Success({ searchParams }: { searchParams: Record<string, string | undefined> }) {
  const { orderId = "", paymentKey = "", amount = "" } = searchParams;
  const order = shop.orders.get(orderId);
  let badge: string, detail: string, ms = 0;
  if (!order) {
    badge = "FAILURE";
    detail = "Unknown order.";
  } else if (Number(amount) !== order.amount) {
    badge = "FAILURE";
    detail = `The amount in the return URL (${amount}) is not the order's (${order.amount}): not confirmed.`;
  } else {
    const c = await client();
    const start = Date.now();
    try {
      const r = await c.confirm(orderId, { paymentKey, amount: order.amount, paymentToken: order.paymentToken, waitSeconds: 10 });
      ms = Date.now() - start;
      badge = r.result === "DUPLICATE" ? "DUPLICATE DETECTED" : r.result;
      detail = `The order is ${r.order.status}.`;
    } catch (e) {
      ms = Date.now() - start;
      badge = "FAILURE";
      detail = e instanceof PayrailError ? `${e.code}: ${e.detail}` : String(e);
    }
  }
  const colour = badge === "SUCCESS" ? "#0a7d32" : badge.startsWith("DUPLICATE") ? "#8a5a00" : "#c0392b";
  return (
    <>
      <section style={{ background: "#fff", borderRadius: 12, padding: 24 }}>
        <span id="badge" style={{ background: colour, color: "#fff", borderRadius: 999, padding: "6px 14px", fontWeight: 700 }}>{badge}</span>
        <p id="detail">{detail}</p>
        <p>orderId <code id="order-id">{orderId}</code> · processing time <span id="elapsed">{ms}</span> ms</p>
        <a id="again" href={`/success?orderId=${encodeURIComponent(orderId)}&paymentKey=${encodeURIComponent(paymentKey)}&amount=${encodeURIComponent(amount)}`}>Confirm again (a duplicate)</a>
        {" · "}<a href="/">Buy another</a>
      </section>
      <Callbacks />
    </>
  );
}
