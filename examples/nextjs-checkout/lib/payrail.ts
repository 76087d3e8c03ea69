// Server-only: payrail's SDK, the merchant's credentials and the shop's
// memory (orders it created, callbacks it received). Credentials come from
// PAYRAIL_CLIENT_ID / PAYRAIL_CLIENT_SECRET / PAYRAIL_CALLBACK_SECRET, or the
// shop registers itself once with PAYRAIL_ADMIN_TOKEN (make up's .run/env)
// and keeps them in .credentials.json.
import { Payrail, verifyWebhook, type CallbackEvent } from "@payrail/node";
import { existsSync, readFileSync, writeFileSync } from "node:fs";

export const apiURL = process.env.PAYRAIL_API_URL ?? "http://127.0.0.1:8080";
export const publicURL = (process.env.SHOP_PUBLIC_URL ?? `http://127.0.0.1:${process.env.PORT ?? 3000}`).replace(/\/+$/, "");

interface Credentials { clientId: string; clientSecret: string; callbackSecret: string }

let creds: Promise<Credentials> | undefined;

async function register(): Promise<Credentials> {
  if (process.env.PAYRAIL_CLIENT_ID && process.env.PAYRAIL_CLIENT_SECRET && process.env.PAYRAIL_CALLBACK_SECRET) {
    return { clientId: process.env.PAYRAIL_CLIENT_ID, clientSecret: process.env.PAYRAIL_CLIENT_SECRET, callbackSecret: process.env.PAYRAIL_CALLBACK_SECRET };
  }
  const file = process.env.SHOP_CREDENTIALS_FILE ?? ".credentials.json";
  if (existsSync(file)) return JSON.parse(readFileSync(file, "utf8"));
  const token = process.env.PAYRAIL_ADMIN_TOKEN;
  if (!token) throw new Error("set PAYRAIL_CLIENT_ID/_SECRET/PAYRAIL_CALLBACK_SECRET, or PAYRAIL_ADMIN_TOKEN to register (source make up's .run/env)");
  const res = await fetch(apiURL + "/admin/merchants", {
    method: "POST",
    headers: { Authorization: `Bearer ${token}`, "Content-Type": "application/json" },
    body: JSON.stringify({ name: "Next.js checkout", callbackUrl: publicURL + "/api/callbacks", returnUrl: publicURL + "/" }),
  });
  if (res.status !== 201) throw new Error(`register the shop as a merchant: ${res.status} ${await res.text()}`);
  const m = await res.json();
  const c = { clientId: m.clientId, clientSecret: m.clientSecret, callbackSecret: m.callbackSecret };
  writeFileSync(file, JSON.stringify(c), { mode: 0o600 });
  return c;
}

export async function credentials(): Promise<Credentials> {
  creds ??= register().catch((e) => { creds = undefined; throw e; });
  return creds;
}

export async function client(): Promise<Payrail> {
  const c = await credentials();
  return new Payrail(apiURL, c.clientId, c.clientSecret);
}

// The shop's memory: a demo keeps it in the process (a real shop: its DB).
interface ShopOrder { orderId: string; amount: number; paymentToken: string; name: string }
interface Received { at: string; type: string; orderId: string; status: string; verified: boolean; webhookId: string }
const g = globalThis as unknown as { shop?: { orders: Map<string, ShopOrder>; callbacks: Received[] } };
g.shop ??= { orders: new Map(), callbacks: [] };
export const shop = g.shop;

export async function receive(headers: Headers, raw: string): Promise<boolean> {
  const c = await credentials();
  let ev: CallbackEvent | undefined;
  try {
    ev = verifyWebhook(c.callbackSecret, headers, raw);
  } catch {
    shop.callbacks.push({ at: new Date().toISOString(), type: "?", orderId: "", status: "", verified: false, webhookId: headers.get("webhook-id") ?? "" });
    return false;
  }
  const id = headers.get("webhook-id") ?? "";
  if (!shop.callbacks.some((x) => x.webhookId === id)) {
    shop.callbacks.push({ at: new Date().toISOString(), type: ev.type, orderId: ev.data.orderId, status: ev.data.status, verified: true, webhookId: id });
    shop.callbacks.splice(0, Math.max(0, shop.callbacks.length - 200));
  }
  return true;
}
