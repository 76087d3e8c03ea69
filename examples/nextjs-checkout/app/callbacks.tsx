"use client";
import { useEffect, useState } from "react";

interface Received { at: string; type: string; orderId: string; status: string; verified: boolean; webhookId: string }

// The callbacks payrail sent the shop, as they arrive (polled).
export default function Callbacks() {
  const [list, setList] = useState<Received[]>([]);
  useEffect(() => {
    let stop = false;
    const tick = async () => {
      try {
        const r = await fetch("/api/callbacks", { cache: "no-store" });
        if (r.ok) setList(await r.json());
      } catch {}
      if (!stop) setTimeout(tick, 1000);
    };
    tick();
    return () => { stop = true; };
  }, []);
  return (
    <section style={{ background: "#fff", borderRadius: 12, padding: 24, marginTop: 16 }}>
      <h2 style={{ fontSize: 16, marginTop: 0 }}>Callbacks received (live)</h2>
      {list.length === 0 ? <p id="no-callbacks">None yet.</p> : (
        <ul id="callbacks" style={{ fontFamily: "ui-monospace, monospace", fontSize: 13 }}>
          {list.map((c) => (
            <li key={c.webhookId} data-type={c.type} data-order={c.orderId} data-verified={String(c.verified)}>
              {c.at} {c.type} {c.orderId} {c.status} {c.verified ? "✓ signature verified" : "✗ NOT VERIFIED"}
            </li>
          ))}
        </ul>
      )}
    </section>
  );
}
