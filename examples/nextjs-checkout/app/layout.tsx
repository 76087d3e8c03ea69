import type { ReactNode } from "react";

export const metadata = { title: "Mini Payment Demo on payrail" };

export default function RootLayout({ children }: { children: ReactNode }) {
  return (
    <html lang="ko">
      <body style={{ fontFamily: "system-ui, sans-serif", background: "#f6f7f9", margin: 0 }}>
        <header style={{ background: "#fff", padding: "14px 24px", borderBottom: "1px solid #e5e8eb" }}>
          <b>Mini Payment Demo</b> · Next.js on payrail
        </header>
        <main style={{ maxWidth: 720, margin: "24px auto", padding: "0 16px" }}>{children}</main>
      </body>
    </html>
  );
}
