import { receive, shop } from "@/lib/payrail";

export const dynamic = "force-dynamic";

// payrail's callbacks: verified (Standard Webhooks) before anything is read.
export async function POST(req: Request) {
  const ok = await receive(req.headers, await req.text());
  return new Response(null, { status: ok ? 204 : 401 });
}

// What the live panel shows.
export async function GET() {
  return Response.json([...shop.callbacks].reverse());
}
