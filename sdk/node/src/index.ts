// @payrail/node: payrail's merchant API (api/openapi.yaml) for Node ≥ 20.
//
// Every request is signed with the merchant's client secret (HMAC-SHA256 of
// METHOD \n target \n timestamp \n nonce \n sha256(body), DESIGN.md
// "Merchant authentication"); every POST carries an Idempotency-Key (made up
// when the caller gives none, and kept across retries, so a retry is never a
// second order, confirm or cancel); 429, 503 and network failures are retried
// with backoff honouring Retry-After; a refusal is a PayrailError carrying
// payrail's stable code. Callbacks are verified with verifyWebhook
// (Standard Webhooks, through the standardwebhooks package).

import { createHash, createHmac, randomBytes } from "node:crypto";
import { Webhook } from "standardwebhooks";

export const HeaderClientId = "X-Payrail-Client-Id";
export const HeaderTimestamp = "X-Payrail-Timestamp";
export const HeaderNonce = "X-Payrail-Nonce";
export const HeaderSignature = "X-Payrail-Signature";

/** The string a merchant signs. `target` is the path and query exactly as sent. */
export function canonicalString(method: string, target: string, timestamp: string, nonce: string, body: string | Uint8Array): string {
  const sum = createHash("sha256").update(body).digest("hex");
  return [method, target, timestamp, nonce, sum].join("\n");
}

/** The X-Payrail-Signature value: "v1=" + hex HMAC-SHA256(secret, canonicalString). */
export function sign(secret: string, method: string, target: string, timestamp: string, nonce: string, body: string | Uint8Array): string {
  return "v1=" + createHmac("sha256", secret).update(canonicalString(method, target, timestamp, nonce, body)).digest("hex");
}

/** 32 characters of [A-Za-z0-9_-]: 192 random bits. */
export function nonce(): string {
  return randomBytes(24).toString("base64url");
}

/** The four signature headers for one request. */
export function signatureHeaders(clientId: string, secret: string, method: string, target: string, body: string, now = new Date()): Record<string, string> {
  const ts = Math.floor(now.getTime() / 1000).toString();
  const n = nonce();
  return {
    [HeaderClientId]: clientId,
    [HeaderTimestamp]: ts,
    [HeaderNonce]: n,
    [HeaderSignature]: sign(secret, method, target, ts, n, body),
  };
}

/** payrail's refusal (application/problem+json) or an unexpected answer. Branch on `code`. */
export class PayrailError extends Error {
  constructor(
    readonly status: number,
    readonly code: string,
    readonly title: string,
    readonly detail: string,
    readonly retryAfterMs?: number,
  ) {
    super(`payrail: ${status} ${code}: ${detail}`);
    this.name = "PayrailError";
  }
}

export type OrderStatus =
  | "CREATED" | "CONFIRMING" | "AWAITING_DEPOSIT" | "PAID" | "PARTIALLY_CANCELED" | "CANCELED" | "FAILED" | "EXPIRED";

export interface VirtualAccount { accountNumber: string; bankCode: string; customerName: string; dueDate: string }
export interface RefundAccount { bank: string; accountNumber: string; holderName: string }
export interface LogEntry { at: string; action: string; from: OrderStatus | null; to: OrderStatus | null; actor: string; details: Record<string, unknown> | null }

export interface Order {
  orderId: string;
  merchantOrderId: string | null;
  status: OrderStatus;
  version: number;
  amount: number;
  currency: string;
  orderName: string;
  successUrl?: string;
  failUrl?: string;
  paymentKey: string | null;
  method: string | null;
  approvedAt: string | null;
  virtualAccount?: VirtualAccount;
  failure: { code: string; message: string } | null;
  canceledAmount: number;
  pendingCancelAmount: number;
  needsReconciliation: boolean;
  expiresAt: string;
  createdAt: string;
  updatedAt: string;
  history?: LogEntry[];
  historyNextCursor?: string;
}

/** CreateOrder's answer: the order plus its one-time paymentToken and the PG's window. */
export interface CreatedOrder extends Order { paymentToken: string; checkoutUrl: string }

export type ConfirmResultKind = "ACCEPTED" | "SUCCESS" | "FAILURE" | "DUPLICATE" | "AWAITING_DEPOSIT";
export interface ConfirmResult { result: ConfirmResultKind; order: Partial<Order> & { orderId: string; status: OrderStatus } }

export interface Cancel {
  cancelId: string; orderId: string; amount: number; reason: string; status: "PENDING" | "SUCCEEDED" | "FAILED";
  failureCode: string | null; failureMessage: string | null; refundReceiveAccount?: Record<string, string>;
  needsReconciliation: boolean; createdAt: string; updatedAt: string;
}

export interface Callback {
  callbackId: string; orderId: string; type: string; status: "PENDING" | "DELIVERED" | "DEAD"; attempt: number;
  nextAttemptAt: string | null; deliveredAt: string | null; lastError: string | null; createdAt: string;
  payload: unknown; attempts: Array<{ attempt: number; startedAt: string; statusCode: number | null; latencyMs: number; error: string | null }>;
}

/** A callback's body. */
export interface CallbackEvent { type: string; timestamp: string; data: Order & { previousStatus: OrderStatus } }

export interface ClientOptions {
  /** Retries of 429, 503 and network failures (default 3). */
  retries?: number;
  /** First retry delay when the answer names none, doubling with jitter (default 200 ms). */
  backoffMs?: number;
  /** A fetch to use instead of the global one. */
  fetch?: typeof fetch;
}

interface Call {
  method: "GET" | "POST";
  path: string;
  body?: unknown;
  idempotencyKey?: string;
  headers?: Record<string, string>;
  want: number[];
  signal?: AbortSignal;
}

const sleep = (ms: number, signal?: AbortSignal) =>
  new Promise<void>((resolve, reject) => {
    const t = setTimeout(resolve, ms);
    signal?.addEventListener("abort", () => { clearTimeout(t); reject(signal.reason); }, { once: true });
  });

/** A client of one payrail as one merchant. */
export class Payrail {
  private readonly base: string;
  private readonly retries: number;
  private readonly backoffMs: number;
  private readonly fetchFn: typeof fetch;

  constructor(baseUrl: string, private readonly clientId: string, private readonly clientSecret: string, opts: ClientOptions = {}) {
    this.base = baseUrl.replace(/\/+$/, "");
    this.retries = opts.retries ?? 3;
    this.backoffMs = opts.backoffMs ?? 200;
    this.fetchFn = opts.fetch ?? fetch;
  }

  private async request<T>(c: Call): Promise<{ status: number; body: T }> {
    const raw = c.body === undefined ? "" : JSON.stringify(c.body);
    const idem = c.method === "POST" ? (c.idempotencyKey ?? "sdk_" + nonce()) : undefined;
    for (let attempt = 0; ; attempt++) {
      // Signed afresh each attempt (a new nonce); the same Idempotency-Key.
      const headers: Record<string, string> = { Accept: "application/json", ...c.headers, ...signatureHeaders(this.clientId, this.clientSecret, c.method, c.path, raw) };
      if (raw !== "") headers["Content-Type"] = "application/json";
      if (idem) headers["Idempotency-Key"] = idem;
      let res: Response | undefined;
      let netErr: unknown;
      try {
        res = await this.fetchFn(this.base + c.path, { method: c.method, headers, body: raw === "" ? undefined : raw, signal: c.signal });
      } catch (e) {
        if (c.signal?.aborted) throw e;
        netErr = e;
      }
      let text = "";
      if (res) text = await res.text();
      let wait = this.backoffMs * 2 ** attempt;
      wait = wait / 2 + Math.random() * wait;
      let retry = false;
      if (netErr !== undefined) retry = true;
      else if (res && (res.status === 429 || res.status === 503 || (res.status === 409 && problem(text).code === "IDEMPOTENCY_KEY_IN_USE"))) {
        retry = true;
        const ra = Number.parseInt(res.headers.get("Retry-After") ?? "", 10);
        if (Number.isFinite(ra) && ra >= 0) wait = ra * 1000;
      }
      if (retry && attempt < this.retries) {
        await sleep(wait, c.signal);
        continue;
      }
      if (netErr !== undefined) throw netErr;
      const r = res!;
      if (c.want.includes(r.status)) return { status: r.status, body: (text === "" ? undefined : JSON.parse(text)) as T };
      const p = problem(text);
      const ra = Number.parseInt(r.headers.get("Retry-After") ?? "", 10);
      throw new PayrailError(r.status, p.code || `HTTP_${r.status}`, p.title ?? "", p.detail ?? text.trim(), Number.isFinite(ra) ? ra * 1000 : undefined);
    }
  }

  /** POST /v1/orders. Keep `paymentToken` server-side for the confirm. */
  async createOrder(p: { amount: number; orderName: string; merchantOrderId?: string; currency?: string; successUrl?: string; failUrl?: string; idempotencyKey?: string }, signal?: AbortSignal): Promise<CreatedOrder> {
    const { idempotencyKey, ...body } = p;
    return (await this.request<CreatedOrder>({ method: "POST", path: "/v1/orders", body, idempotencyKey, want: [201], signal })).body;
  }

  /** GET /v1/orders/{orderId}, with the first page of its history. */
  async getOrder(orderId: string, signal?: AbortSignal): Promise<Order> {
    return (await this.request<Order>({ method: "GET", path: "/v1/orders/" + encodeURIComponent(orderId), want: [200], signal })).body;
  }

  /** Every order, newest first, reading pages as it goes. */
  async *listOrders(p: { status?: OrderStatus; merchantOrderId?: string; pageSize?: number } = {}, signal?: AbortSignal): AsyncGenerator<Order> {
    let cursor = "";
    for (;;) {
      const q = new URLSearchParams();
      if (p.status) q.set("status", p.status);
      if (p.merchantOrderId) q.set("merchantOrderId", p.merchantOrderId);
      q.set("limit", String(p.pageSize && p.pageSize > 0 && p.pageSize <= 100 ? p.pageSize : 50));
      if (cursor) q.set("cursor", cursor);
      const page = (await this.request<{ orders: Order[]; nextCursor: string | null }>({ method: "GET", path: "/v1/orders?" + q.toString(), want: [200], signal })).body;
      yield* page.orders;
      if (!page.nextCursor) return;
      cursor = page.nextCursor;
    }
  }

  /** POST /v1/orders/{orderId}/confirm; `waitSeconds` (≤ 30) asks for the outcome (Prefer: wait). */
  async confirm(orderId: string, p: { paymentKey: string; amount: number; paymentToken: string; waitSeconds?: number; idempotencyKey?: string }, signal?: AbortSignal): Promise<ConfirmResult> {
    const { waitSeconds, idempotencyKey, ...body } = p;
    const headers: Record<string, string> = {};
    if (waitSeconds && waitSeconds > 0) headers["Prefer"] = `wait=${Math.min(30, Math.floor(waitSeconds))}`;
    const r = await this.request<Order & { result: ConfirmResultKind }>({
      method: "POST", path: "/v1/orders/" + encodeURIComponent(orderId) + "/confirm", body, idempotencyKey, headers, want: [200, 202], signal,
    });
    const { result, ...order } = r.body;
    return { result, order };
  }

  /** POST /v1/orders/{orderId}/cancel (amount omitted: all that remains). */
  async cancel(orderId: string, p: { reason: string; amount?: number; refundReceiveAccount?: RefundAccount; idempotencyKey?: string }, signal?: AbortSignal): Promise<Cancel> {
    const { idempotencyKey, ...body } = p;
    return (await this.request<Cancel>({ method: "POST", path: "/v1/orders/" + encodeURIComponent(orderId) + "/cancel", body, idempotencyKey, want: [202], signal })).body;
  }

  /** GET /v1/orders/{orderId}/cancels/{cancelId}. */
  async getCancel(orderId: string, cancelId: string, signal?: AbortSignal): Promise<Cancel> {
    return (await this.request<Cancel>({ method: "GET", path: `/v1/orders/${encodeURIComponent(orderId)}/cancels/${encodeURIComponent(cancelId)}`, want: [200], signal })).body;
  }

  /** GET /v1/callbacks?orderId=: the callbacks with their attempts. */
  async listCallbacks(orderId?: string, signal?: AbortSignal): Promise<Callback[]> {
    const path = "/v1/callbacks" + (orderId ? "?orderId=" + encodeURIComponent(orderId) : "");
    return (await this.request<{ callbacks: Callback[] }>({ method: "GET", path, want: [200], signal })).body.callbacks;
  }

  /** POST /v1/callbacks/{callbackId}/redeliver. */
  async redeliver(callbackId: string, signal?: AbortSignal): Promise<Callback> {
    return (await this.request<Callback>({ method: "POST", path: `/v1/callbacks/${encodeURIComponent(callbackId)}/redeliver`, want: [202], signal })).body;
  }
}

function problem(text: string): { code?: string; title?: string; detail?: string } {
  try {
    const p = JSON.parse(text);
    return typeof p === "object" && p !== null ? p : {};
  } catch {
    return {};
  }
}

/**
 * Verifies a callback (Standard Webhooks) against the merchant's secrets (two
 * during a rotation: either may match) and returns its parsed body. Throws when
 * no secret verifies it, or its timestamp is more than five minutes off.
 * Pass the raw body, exactly as received.
 */
export function verifyWebhook(secrets: string | string[], headers: Record<string, string | string[] | undefined> | Headers, rawBody: string): CallbackEvent {
  const get = (k: string): string => {
    if (headers instanceof Headers) return headers.get(k) ?? "";
    const v = headers[k] ?? headers[k.toLowerCase()];
    return Array.isArray(v) ? v[0] ?? "" : v ?? "";
  };
  const h = { "webhook-id": get("webhook-id"), "webhook-timestamp": get("webhook-timestamp"), "webhook-signature": get("webhook-signature") };
  let last: unknown = new Error("no callback secret given");
  for (const s of Array.isArray(secrets) ? secrets : [secrets]) {
    try {
      return new Webhook(s).verify(rawBody, h) as CallbackEvent;
    } catch (e) {
      last = e;
    }
  }
  throw last;
}
