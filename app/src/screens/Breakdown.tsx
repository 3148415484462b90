import { apiGet, type Energy } from "../api";
import { useFigures } from "../figures";
import { kwh, percent } from "../format";
import { t } from "../i18n";
import { iso, period } from "../tz";
import { Age, type ScreenProps } from "./common";

export interface Share {
  name: string;
  kwh: number;
  share: number;
}

export function shares(energy: Energy, unmeteredName: string): Share[] {
  const total = energy.points.reduce((s, p) => s + (p.kwh ?? 0), 0);
  const rows = energy.loads.map((l) => ({ name: l.name, kwh: l.total_kwh }));
  const metered = rows.reduce((s, r) => s + r.kwh, 0);
  if (total - metered > 0.05 * Math.max(total, 1e-9)) rows.push({ name: unmeteredName, kwh: total - metered });
  const base = Math.max(total, metered);
  return rows.map((r) => ({ ...r, share: base > 0 ? r.kwh / base : 0 })).sort((a, b) => b.kwh - a.kwh);
}

export function Breakdown({ userId, home, signedOut }: ScreenProps) {
  const figures = useFigures(
    userId,
    `breakdown:${home.id}`,
    async () => {
      const month = period(home.timezone, "month", Date.now());
      return apiGet<Energy>(`facilities/${home.id}/energy/`, { start: iso(month.start), end: iso(month.end), resolution: "1mo" });
    },
    signedOut,
  );
  const rows = figures.value ? shares(figures.value, t("unmetered")) : [];
  return (
    <section>
      <h2>{t("breakdown")}</h2>
      <p class="muted">{t("loadShare")}</p>
      <ul class="rows shares">
        {rows.map((r) => (
          <li key={r.name}>
            <span>{r.name}</span>
            <strong>{kwh(r.kwh)} · {percent(r.share).replace(/^\+/, "")}</strong>
            <meter min={0} max={1} value={r.share} />
          </li>
        ))}
      </ul>
      {!rows.length && figures.value && <p class="muted">{t("noLoads")}</p>}
      <Age figures={figures} />
    </section>
  );
}
