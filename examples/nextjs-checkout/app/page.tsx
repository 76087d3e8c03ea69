import { redirect } from "next/navigation";
import { client, publicURL, shop } from "@/lib/payrail";
import Callbacks from "./callbacks";

export const dynamic = "force-dynamic";

const product = { name: "Jeju hallabong tea, 20 sachets", amount: 15000 };

// The server creates the order: the amount is the shop's, never the browser's.
async function buy() {
  "use server";
  const c = await client();
  const o = await c.createOrder({
    amount: product.amount,
    orderName: product.name,
    successUrl: publicURL + "/success",
    failUrl: publicURL + "/fail",
  });
  shop.orders.set(o.orderId, { orderId: o.orderId, amount: o.amount, paymentToken: o.paymentToken, name: product.name });
  redirect(o.checkoutUrl);
}

export default function Product() {
  return (
    <>
      <section style={{ background: "#fff", borderRadius: 12, padding: 24 }}>
        <h1 style={{ fontSize: 22, margin: 0 }}>{product.name}</h1>
        <p style={{ fontSize: 26, fontWeight: 700 }}>₩{product.amount.toLocaleString("en-US")}</p>
        <form action={buy}>
          <button id="buy" type="submit" style={{ fontSize: 16, padding: "10px 18px", borderRadius: 8, border: 0, background: "#3182f6", color: "#fff" }}>
            Buy now
          </button>
        </form>
      </section>
      <Callbacks />
    </>
  );
}
