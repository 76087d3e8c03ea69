export default function Fail({ searchParams }: { searchParams: Record<string, string | undefined> }) {
  return (
    <section style={{ background: "#fff", borderRadius: 12, padding: 24 }}>
      <span id="badge" style={{ background: "#c0392b", color: "#fff", borderRadius: 999, padding: "6px 14px", fontWeight: 700 }}>FAILURE</span>
      <p id="detail">{searchParams.code}: {searchParams.message} (nothing was confirmed)</p>
      <a href="/">Try again</a>
    </section>
  );
}
